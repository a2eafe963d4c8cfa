"""Label and field selectors, as kube-apiserver parses them."""

from __future__ import annotations

import pytest

from vlmop.operator.localapi.selectors import SelectorError, field_selector, label_selector

OBJ = {"metadata": {"name": "w-0", "namespace": "ml", "labels": {"app": "trainer", "rank": "0"}}}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("app=trainer", True),
        ("app==trainer,rank=0", True),
        ("app=trainer,rank=1", False),
        ("app!=trainer", False),
        ("app", True),
        ("!app", False),
        ("!missing", True),
        ("rank in (0, 1)", True),
        ("rank notin (0,1)", False),
        ("app in (vision)", False),
        ("vlmop.io/owner-kind=PretrainJob", False),
    ],
)
def test_label_selector(selector: str, expected: bool) -> None:
    assert label_selector(selector)(OBJ) is expected


@pytest.mark.parametrize("bad", ["app=(x", "in in", "=x"])
def test_malformed_label_selector_is_an_error(bad: str) -> None:
    with pytest.raises(SelectorError):
        label_selector(bad)


def test_field_selector() -> None:
    assert field_selector("metadata.name=w-0")(OBJ)
    assert not field_selector("metadata.name=w-0,metadata.namespace!=ml")(OBJ)
    with pytest.raises(SelectorError):
        field_selector("status.phase=Running")
