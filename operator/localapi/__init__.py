"""A Kubernetes API server on loopback for tests and `vlmop local` (needs the `local` extra)."""
