"""MODEL_PARALLEL=auto: how many requests to send the model server at once, learned.

It starts from a guess by address (`bot.config.default_parallel`: 8 for OpenAI, 1 for a local
or private address, 4 for other hosts), then:

- **the server's own number wins**: llama.cpp's `GET /props` says `total_slots`; the limit
  becomes that number (never above MODEL_PARALLEL_MAX) and is not probed past it;
- **a remote server is probed**: while replies queue at the limit and the time to the first
  token at the limit stays within `FLAT` of the time when a request runs alone, the server is
  not queueing them, and the limit grows by one (additive increase); when it rises past
  `RISING`, the server queues (its latency grows with concurrency) and the limit falls by a
  quarter (multiplicative decrease). An answer of 429 or 503 halves it at once;
- **a local server without its number is never probed upward**: some (llama-cpp-python by
  default) interrupt the running request when another arrives, so a second request in flight
  would cut a reply. Only the decreases apply. Set MODEL_PARALLEL for such a server.

A fixed MODEL_PARALLEL bypasses all of this. The one-slot rules of `bot.model.scheduler`
(replies first, background calls aborted for a reply) hold whenever the limit is 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp

log = logging.getLogger(__name__)

PROPS_TIMEOUT_SECONDS = 3.0

FLAT = 1.5  # first-token time at the limit within 1.5× of a lone request's: not queueing
RISING = 2.5  # past 2.5×: the server queues what we send
SAMPLES = 5  # of each kind before a change; both averages start again after one
SMOOTHING = 0.3  # weight of the newest sample in each moving average


class ParallelLimit:
    """The learned limit; `on_change` is told each new value (the scheduler's `parallel`)."""

    def __init__(
        self,
        guess: int,
        maximum: int,
        *,
        may_probe: bool,
        on_change: Callable[[int], None] = lambda _: None,
    ) -> None:
        self.maximum = max(maximum, 1)
        self.value = min(max(guess, 1), self.maximum)
        self.ceiling = self.maximum  # the server's own number, once it said it
        self.may_probe = may_probe
        self.told = False
        self._on_change = on_change
        self._alone = _Average()
        self._at_limit = _Average()

    def reset(self, guess: int) -> None:
        """A new guess (MODEL_PARALLEL read again); the server's own number still wins."""
        self._set(self.ceiling if self.told else guess, "guess")

    def server_says(self, slots: int) -> None:
        """The server's own count of requests it runs at once (llama.cpp's total_slots)."""
        self.told = True
        self.ceiling = min(max(slots, 1), self.maximum)
        self._set(self.ceiling, "the server's /props")

    def sample(self, first_token_seconds: float, in_flight: int, queued: bool) -> None:
        """One request's time to its first token, with how many ran (itself included) when
        it was sent, and whether replies were waiting for a slot."""
        if in_flight <= 1:
            self._alone.add(first_token_seconds)
        elif in_flight >= self.value:
            self._at_limit.add(first_token_seconds)
        if self._alone.count < SAMPLES or self._at_limit.count < SAMPLES:
            return
        ratio = self._at_limit.mean / max(self._alone.mean, 1e-6)
        if ratio > RISING:
            self._set(max(1, self.value * 3 // 4), f"first token {ratio:.1f}× slower at the limit")
        elif ratio <= FLAT and queued and self.may_probe and self.value < self.ceiling:
            self._set(self.value + 1, f"first token {ratio:.1f}× a lone request's at the limit")

    def overloaded(self) -> None:
        """The server answered 429 or 503: too many at once."""
        self._set(max(1, self.value // 2), "the server said it is busy")

    def _set(self, value: int, why: str) -> None:
        value = min(max(value, 1), self.ceiling)
        self._at_limit.clear()  # the limit is judged afresh after each decision
        if value == self.value:
            return
        log.info("Model requests at once: %d → %d (%s)", self.value, value, why)
        self.value = value
        self._on_change(value)


class _Average:
    def __init__(self) -> None:
        self.mean = 0.0
        self.count = 0

    def add(self, seconds: float) -> None:
        self.mean = seconds if not self.count else (1 - SMOOTHING) * self.mean + SMOOTHING * seconds
        self.count += 1

    def clear(self) -> None:
        self.mean, self.count = 0.0, 0


async def server_slots(base_url: object, api_key: str) -> int | None:
    """How many requests the server says it runs at once: llama.cpp's `GET /props`
    `total_slots` (served at the root, beside `/v1`). None when it does not say (other
    servers answer 404, or something that is not a count)."""
    parts = urlsplit(str(base_url))
    props = f"{parts.scheme}://{parts.netloc}/props"
    timeout = aiohttp.ClientTimeout(total=PROPS_TIMEOUT_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(props, headers={"Authorization": f"Bearer {api_key}"}) as response,
        ):
            if response.status != 200:
                return None
            slots = (await response.json(content_type=None)).get("total_slots")
    except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError):
        return None
    return slots if isinstance(slots, int) and not isinstance(slots, bool) and slots > 0 else None
