"""kube.retrying: transient API errors become kopf's TemporaryError with the server's Retry-After or
an exponential delay by retry count; other errors pass through untouched."""

from __future__ import annotations

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from vlmop.operator import kube


def api_error(status: int, headers: dict[str, str] | None = None) -> ApiException:
    error = ApiException(status=status, reason="x")
    error.headers = headers
    return error


@pytest.mark.parametrize(
    ("status", "headers", "retry", "delay"),
    [(429, {"Retry-After": "7"}, 0, 7.0), (429, None, 3, 8.0), (500, None, 0, 1.0), (503, None, 4, 16.0),
     (409, None, 10, 60.0), (500, {"Retry-After": "7"}, 1, 2.0)],
)  # fmt: skip
def test_transient_errors_retry_soon(
    status: int, headers: dict[str, str] | None, retry: int, delay: float
) -> None:
    with pytest.raises(kopf.TemporaryError) as caught, kube.retrying(retry):
        raise api_error(status, headers)
    assert caught.value.delay == delay


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_other_errors_pass_through(status: int) -> None:
    with pytest.raises(ApiException), kube.retrying(0):
        raise api_error(status)
