"""torchx integration (extra `vlmop[torchx]`): the `vlmop` scheduler (AppDef → PretrainJob) and
components for vlmop's trainers. The operator never imports it."""
