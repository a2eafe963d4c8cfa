"""bench/create_observe.py at a small count, as a test: a burst of objects of the three kinds, created as
fast as one client can, against the real operator. Each object costs exactly its children's creates
and one status write (the indexes lag behind such a burst: expectations keep the operator from writing
a child twice or a status it will change), and once converged nothing is written."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import create_observe


def test_a_burst_of_mixed_objects_costs_their_creates_and_one_status_write() -> None:
    out = create_observe.main(count=60, example="mixed", rate=0.0, steady=2.0, profile=None)
    # Children: PretrainJob and CascadeRLJob 3 each (Service, ConfigMap, Job), DvDDeployment 9 (3
    # Deployments, 3 Services, 3 NetworkPolicies): 15 for each three objects.
    assert out["creates_per_object"] == 5.0
    for kind in ("PretrainJob", "CascadeRLJob", "DvDDeployment"):
        assert out[f"status_patches_per_{kind}"] == 1.0
    assert (
        out["object_patches_per_object"] == out["deletes_per_object"] == out["other_writes_per_object"] == 0
    )
    assert out["steady_writes"] == 0
