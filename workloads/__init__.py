"""vlmop.workloads: what runs inside the pods, each a `python -m` entry point."""
