"""Faults a test injects into REST: the next matching requests answered with an error, or held."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tests.fakes.discord.protocol import JSON


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int | None
    count: int
    body: JSON | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


_STATUS_BODIES: dict[int, JSON] = {
    400: {"message": "Invalid Form Body", "code": 50035, "errors": {}},
    401: {"message": "401: Unauthorized", "code": 0},
    403: {"message": "Missing Permissions", "code": 50013},
    404: {"message": "404: Not Found", "code": 0},
    429: {"message": "You are being rate limited.", "retry_after": 0.05, "global": False},
}


class Faults:
    """Errors and delays for the next matching REST requests."""

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        count: int = 1,
        body: JSON | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` matching REST requests with ``status``.

        ``path_regex`` must match the whole path after ``/api/v10`` (``re.fullmatch``). A 429
        gets ``retry_after`` 0.05 and a ``Via`` header, so discord.py waits and retries it.
        """
        default_headers = {"Via": "1.1 google", "Retry-After": "1"} if status == 429 else {}
        fault = _Fault(method.upper(), re.compile(path_regex), status, count)
        fault.body = {
            **_STATUS_BODIES.get(status, {"message": f"{status}", "code": 0}),
            **(body or {}),
        }
        fault.headers = {**default_headers, **(headers or {})}
        self._faults.append(fault)

    def delay_next(self, method: str, path_regex: str, seconds: float, *, count: int = 1) -> None:
        """Hold the next ``count`` matching REST requests for ``seconds`` before handling them."""
        self._faults.append(
            _Fault(method.upper(), re.compile(path_regex), None, count, delay=seconds)
        )

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.pattern.fullmatch(path):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None
