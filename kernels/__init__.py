"""vlmop.kernels: Triton kernels, each with a torch path for when Triton cannot run and an autograd
wrapper. `linear_logprob` serves the RL trainers; `compress_tiles` the vision pool."""

from vlmop.kernels.ops.linear_logprob import linear_logprob, naive_linear_logprob
from vlmop.kernels.ops.token_compression import PackedTiles, compress_tiles, pixel_shuffle

__all__ = ["PackedTiles", "compress_tiles", "linear_logprob", "naive_linear_logprob", "pixel_shuffle"]
