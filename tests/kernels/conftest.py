"""Every kernel test that takes `backend` runs twice: on the Triton kernels (the interpreter on CPU,
set up in tests/conftest.py) and on the torch path used when Triton cannot run."""

from __future__ import annotations

import pytest
import torch

from vlmop.kernels import backend as kernel_backend


@pytest.fixture(params=["triton", "torch"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "torch":
        monkeypatch.setattr(kernel_backend, "triton_runs", lambda *_: False)
    else:
        assert kernel_backend.triton_runs(torch.zeros(1)), "Triton must be installed (interpreter on CPU)"
    return str(request.param)
