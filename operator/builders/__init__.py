"""Pure functions from a resource to its desired child manifests (plain dicts). No I/O here."""
