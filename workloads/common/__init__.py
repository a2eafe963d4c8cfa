"""Shared by the workloads: rendezvous env, config loading, checkpoint I/O, progress, metrics."""
