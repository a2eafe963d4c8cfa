"""Decoupled vision-language serving: the vision pool, the language pool and the gateway."""
