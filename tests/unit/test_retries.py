"""kube.retry_delay: a throttled request waits the server's Retry-After; every other failure backs off
1, 2, 4 ... 60 s by how many failed in a row."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from vlmop.operator import kube


def api_error(status: int, headers: dict[str, str] | None = None) -> ApiException:
    error = ApiException(status=status, reason="x")
    error.headers = headers
    return error


@pytest.mark.parametrize(
    ("error", "failures", "delay"),
    [(api_error(429, {"Retry-After": "7"}), 1, 7.0), (api_error(429), 4, 8.0), (api_error(500), 1, 1.0),
     (api_error(503), 5, 16.0), (api_error(409), 11, 60.0), (api_error(500, {"Retry-After": "7"}), 2, 2.0),
     (api_error(403), 1, 1.0), (ValueError("a bug"), 3, 4.0), (ValueError("a bug"), 40, 60.0)],
)  # fmt: skip
def test_backoff(error: Exception, failures: int, delay: float) -> None:
    assert kube.retry_delay(error, failures) == delay
