"""`python -m vlmop.operator`: run the operator (same options as `vlmop operator run`)."""

from vlmop.operator.cli import operator_main

if __name__ == "__main__":
    operator_main()
