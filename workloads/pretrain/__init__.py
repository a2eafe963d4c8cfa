"""DeepSpeed pretraining of a (vision-)language model: `python -m vlmop.workloads.pretrain`."""
