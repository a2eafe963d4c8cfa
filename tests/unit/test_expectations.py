"""Expectations: what the operator wrote that its index does not show yet counts as there, until the
index confirms it or it lapses."""

from __future__ import annotations

from vlmop.operator import expectations
from vlmop.operator.expectations import TTL_SECONDS, Expectations
from vlmop.operator.kube import ChildRef

JOB = ChildRef("batch/v1", "Job", "j", "h1")
SERVICE = ChildRef("v1", "Service", "s", "h2")


def test_written_children_count_until_the_index_shows_them() -> None:
    expected = Expectations()
    expected.wrote(JOB)
    assert expected.merge([SERVICE]) == [SERVICE, JOB] and expected.pending("Job", "j")
    older = ChildRef("batch/v1", "Job", "j", "h0")  # the index still has the version before a replace
    assert expected.merge([older]) == [JOB]
    assert expected.merge([JOB, SERVICE]) == [JOB, SERVICE]  # confirmed: dropped
    assert not expected.pending("Job", "j") and expected.merge([]) == []


def test_deleted_children_are_gone_until_the_index_drops_them() -> None:
    expected = Expectations()
    expected.removed("Service", "s")
    assert expected.merge([SERVICE, JOB]) == [JOB]
    assert expected.merge([JOB]) == [JOB] and not expected.deleted
    assert expected.merge([SERVICE, JOB]) == [SERVICE, JOB]  # made again by someone: seen again


def test_expectations_lapse() -> None:
    expected = Expectations()
    expected.wrote(JOB)
    expected.removed("Service", "s")
    later = expected.written[("Job", "j")][1] + TTL_SECONDS + 1
    assert expected.merge([SERVICE], now=later) == [SERVICE]
    assert not expected.written and not expected.deleted


def test_kept_in_the_memo() -> None:
    memo: dict[str, object] = {}
    assert expectations.of(memo) is expectations.of(memo)
