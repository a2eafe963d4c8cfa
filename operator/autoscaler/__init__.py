"""GPU-utilisation scaling policy (pure) and its Prometheus source."""
