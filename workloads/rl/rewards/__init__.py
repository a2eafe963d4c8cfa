"""The Mixture-of-Rewards (Intern-S1): rule verifiers (math, multiple choice, code in a sandbox),
InternBootcamp-style task environments, and clients of model verifiers (CompassVerifier, POLAR),
routed per sample by its source (mixture.py)."""
