"""vlmop.integrations: launchers other tools plug in (torchx); optional, never used by the operator."""
