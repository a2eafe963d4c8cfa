"""Every kernel test that takes `backend` runs twice: on the Triton kernels (compiled on a GPU; the
interpreter on CPU, set up in tests/conftest.py) and on the torch path used when Triton cannot run.
The tests put their tensors on the GPU when there is one."""

from __future__ import annotations

import pytest
import torch

from vlmop.kernels import backend as kernel_backend


@pytest.fixture(params=["triton", "torch"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "torch":
        monkeypatch.setattr(kernel_backend, "triton_runs", lambda *_: False)
    else:
        here = torch.zeros(1, device="cuda" if torch.cuda.is_available() else "cpu")
        assert kernel_backend.triton_runs(here), "Triton must be installed (interpreter on CPU)"
    return str(request.param)
