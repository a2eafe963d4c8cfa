"""The generated CRDs: up to date with the API models, structural, and complete for kubectl."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlmop.operator import crdgen
from vlmop.operator.api import KINDS, KindInfo
from vlmop.operator.api.cascaderljob import CascadeRLJobSpec
from vlmop.workloads.rl.rewards.environments import TASKS

ROOT = Path(__file__).resolve().parents[2]


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for key, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_crds_folder_is_up_to_date(tmp_path: Path) -> None:
    crdgen.write(tmp_path)
    fresh = {p.name: p.read_text() for p in tmp_path.glob("*.yaml")}
    committed = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    assert fresh == committed, "crds/ is stale: run `python -m vlmop.operator.crdgen`"


@pytest.mark.parametrize("info", KINDS, ids=lambda i: i.kind)
def test_crd_names_columns_and_subresources(info: KindInfo) -> None:
    crd = crdgen.crd(info)
    names, version = crd["spec"]["names"], crd["spec"]["versions"][0]
    assert crd["metadata"]["name"] == f"{info.plural}.vlmop.io"
    assert (names["kind"], names["shortNames"], names["categories"]) == (
        info.kind,
        [info.short_name],
        ["vlmop"],
    )
    assert crd["spec"]["scope"] == "Namespaced"
    assert version["subresources"] == {"status": {}}
    columns = [c["jsonPath"] for c in version["additionalPrinterColumns"]]
    assert {".status.phase", ".status.progress", ".metadata.creationTimestamp"} <= set(columns)


@pytest.mark.parametrize("info", KINDS, ids=lambda i: i.kind)
def test_schema_is_structural_and_explained(info: KindInfo) -> None:
    schema = crdgen.kind_schema(info)
    for path, node in walk(schema):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "$defs", "title"} & set(node), path
        if path.count(".") >= 1 and not path.endswith("[]") and not path.endswith("{}"):
            assert node.get("description"), f"{info.kind}{path} has no description (kubectl explain)"
        typed = "type" in node or node.get("x-kubernetes-int-or-string")
        assert typed, f"{info.kind}{path} has no type"
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            assert set(keys) <= set(node["items"].get("required", [])), f"{path}: map keys must be required"


def test_every_status_has_conventions() -> None:
    for info in KINDS:
        status = crdgen.kind_schema(info)["properties"]["status"]["properties"]
        assert {"observedGeneration", "phase", "conditions", "progress"} <= set(status)
        condition = status["conditions"]["items"]
        assert set(condition["required"]) == {"type", "status", "reason", "lastTransitionTime"}
        assert condition["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_defaults_follow_the_cascade_rl_spec() -> None:
    schema = crdgen.kind_schema(KINDS[1])["properties"]["spec"]["properties"]["stages"]["items"]
    mpo, gspo = schema["properties"]["mpo"]["properties"], schema["properties"]["gspo"]["properties"]
    assert [mpo[k]["default"] for k in ("beta", "preferenceWeight", "qualityWeight", "generationWeight")] == [
        0.1,
        0.8,
        0.2,
        1.0,
    ]
    assert (gspo["clipLow"]["default"], gspo["clipHigh"]["default"], gspo["lossMode"]["default"]) == (
        3e-4,
        4e-4,
        "gspo",
    )


def test_committed_files_parse_as_crds() -> None:
    for info in KINDS:
        doc = yaml.safe_load((ROOT / "crds" / f"{info.crd_name}.yaml").read_text())
        assert doc["kind"] == "CustomResourceDefinition"
        assert doc["apiVersion"] == "apiextensions.k8s.io/v1"


def test_the_environments_admitted_are_the_ones_the_trainer_knows() -> None:
    verifier = CascadeRLJobSpec.model_json_schema()["$defs"]["Verifier"]["properties"]["environment"]
    (choices,) = [option["enum"] for option in verifier["anyOf"] if "enum" in option]
    assert sorted(choices) == sorted(TASKS)
