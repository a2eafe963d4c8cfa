"""Bad input, property-based (hypothesis): each kind's example with one field replaced by a generated
value (wrong types, out-of-range and huge numbers, long and strange strings, nulls, lists, objects)
or removed. Whatever comes out, nothing crashes: admission (the CRD schema and CEL, as the API server
applies them) either refuses it with every cause naming a field, or admits it, and then the operator's
side parses it (or marks it InvalidSpec naming the field) and its pure reconcile (decide, build)
runs without an exception. Names that cannot fit the children's names are refused too."""

from __future__ import annotations

import copy
import datetime
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlmop.operator import availability, cascade, crdgen, lifecycle
from vlmop.operator.api import KINDS, CascadeRLJobSpec, DvDDeploymentSpec, PretrainJobSpec
from vlmop.operator.builders import cascaderljob, dvddeployment, pretrainjob
from vlmop.operator.builders.common import COMPONENT, MANAGED_BY, OWNER_KIND, OWNER_NAME
from vlmop.operator.builders.gang import ATTEMPT, QUEUE_LABEL
from vlmop.operator.localapi.admission import StructuralSchema
from vlmop.operator.reconcile import spec_errors

ROOT = Path(__file__).resolve().parents[2]
INFO = {info.kind: info for info in KINDS}
SCHEMAS = {info.kind: StructuralSchema(crdgen.kind_schema(info)) for info in KINDS}
EXAMPLES = {"PretrainJob": "pretrainjob", "CascadeRLJob": "cascaderljob", "DvDDeployment": "dvddeployment"}
NOW = datetime.datetime(2026, 11, 26, tzinfo=datetime.UTC)
DELETE = object()

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
    st.text(alphabet="abc-./_:\u00e9\u202e\x00 ", min_size=200, max_size=2000),
    st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=5)), max_size=3),
    st.dictionaries(st.text(max_size=6), st.one_of(st.integers(-3, 3), st.text(max_size=5)), max_size=3),
    st.just(DELETE),
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += paths(value, (*prefix, i))
    return out


def changed(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node = doc
    for part in path[:-1]:
        node = node[part]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


def reconcile(kind: str, doc: dict[str, Any]) -> None:
    """The operator's pure reconcile of an admitted object: decide and build, as the handlers do."""
    owner = {**doc, "metadata": {**doc["metadata"], "namespace": "ns", "uid": "u"}}
    if kind == "PretrainJob":
        spec = PretrainJobSpec.model_validate(doc["spec"])
        nodes = spec.topology.nodes
        decision = lifecycle.decide(policy=spec.run_policy, nodes=nodes, status={}, generation=1, job=None,
                                    pods=[], now=NOW)  # fmt: skip
        pretrainjob.children(owner, spec, decision.status["restarts"], decision.workers)
    elif kind == "CascadeRLJob":
        crl = CascadeRLJobSpec.model_validate(doc["spec"])
        plan = cascade.decide(spec=crl, status={}, generation=1, job_of=lambda i, a: None, pods=[], now=NOW,
                              export_of=lambda i: "/x")  # fmt: skip
        cascaderljob.children(owner, crl, plan.current, plan.attempt, plan.workers)
    else:
        dvd = DvDDeploymentSpec.model_validate(doc["spec"])
        dvddeployment.children(owner, dvd)
        availability.decide(dvddeployment.POOLS, {}, {}, 1, "http://x", NOW)


def check(kind: str, doc: dict[str, Any]) -> None:
    causes = SCHEMAS[kind].admit(doc)
    if causes:
        assert all(str(c["field"]).startswith(("spec", "metadata")) and c["message"] for c in causes), causes
        return
    errors = spec_errors(INFO[kind], doc["spec"])
    if errors:  # what only the operator detects: Failed/InvalidSpec, naming the field
        assert errors.startswith("spec."), errors
        return
    reconcile(kind, doc)


def example(kind: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "examples" / f"{EXAMPLES[kind]}.yaml").read_text())
    return loaded


def one_change(kind: str) -> Any:
    @st.composite
    def strategy(draw: Any) -> dict[str, Any]:
        doc = example(kind)
        path = draw(st.sampled_from([("spec", *p) for p in paths(doc["spec"])]))
        return changed(doc, path, draw(VALUES))

    return strategy()


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(one_change("PretrainJob"))
def test_pretrainjob_bad_input(doc: dict[str, Any]) -> None:
    check("PretrainJob", doc)


@FAST
@given(one_change("CascadeRLJob"))
def test_cascaderljob_bad_input(doc: dict[str, Any]) -> None:
    check("CascadeRLJob", doc)


@FAST
@given(one_change("DvDDeployment"))
def test_dvddeployment_bad_input(doc: dict[str, Any]) -> None:
    check("DvDDeployment", doc)


@FAST
@given(
    st.sampled_from(sorted(EXAMPLES)),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=300),
)
def test_names_that_cannot_fit_the_children_are_refused(kind: str, name: str) -> None:
    from pathlib import Path

    import yaml

    doc = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "examples" / f"{EXAMPLES[kind]}.yaml").read_text()
    )
    doc["metadata"]["name"] = name
    causes = SCHEMAS[kind].admit(doc)
    if len(name) > INFO[kind].max_name_length:
        assert any(c["field"] == "metadata.name" for c in causes), causes


OURS = {MANAGED_BY, OWNER_KIND, OWNER_NAME, COMPONENT, ATTEMPT, QUEUE_LABEL}
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@FAST
@given(
    st.sampled_from(sorted(EXAMPLES)),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40).filter(
        lambda n: n[0].isalpha() and n[-1].isalnum()
    ),
    st.dictionaries(st.text(max_size=80), st.text(max_size=300), max_size=4),
)
def test_strange_labels_and_annotations_leave_the_children_valid(
    kind: str, name: str, strange: dict[str, str]
) -> None:
    """The user's own labels and annotations, whatever they hold, never reach the children: the
    children's labels are built from the (admitted) name only, and stay valid label values."""
    doc = example(kind)
    doc["metadata"].update(name=name, labels=dict(strange), annotations=dict(strange))
    assert SCHEMAS[kind].admit(doc) == []
    owner = {**doc, "metadata": {**doc["metadata"], "namespace": "ns", "uid": "u"}}
    if kind == "PretrainJob":
        built = pretrainjob.children(owner, PretrainJobSpec.model_validate(doc["spec"]), 0, True)
    elif kind == "CascadeRLJob":
        built = cascaderljob.children(owner, CascadeRLJobSpec.model_validate(doc["spec"]), 1, 0, True)
    else:
        built = dvddeployment.children(owner, DvDDeploymentSpec.model_validate(doc["spec"]))
    for child in built:
        labels = child["metadata"]["labels"]
        assert all(LABEL_VALUE.match(v) and len(v) <= 63 for v in labels.values()), labels
        assert set(labels) <= OURS  # nothing of the user's labels
        assert len(child["metadata"]["name"]) <= 63
