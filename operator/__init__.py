"""vlmop.operator: the kopf operator (the control plane) of vlmop."""
