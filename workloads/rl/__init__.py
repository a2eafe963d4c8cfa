"""vlmop.workloads.rl: Cascade RL (MPO then GSPO) — losses, rewards, and (with the CascadeRLJob
issue) the trainers and rollout client."""
