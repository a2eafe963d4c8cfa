"""One module per op: the Triton kernel(s), the torch path used when Triton cannot run, and the
autograd.Function (Liger-Kernel's layout)."""
