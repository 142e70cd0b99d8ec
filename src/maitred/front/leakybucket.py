"""nginx's ``limit_req`` as a pure function: a leaky bucket per key, kept as one timestamp.

Theory of operation
-------------------
A location's :class:`RateRule` says how fast one key (a client address, an API key) may send:
``rate`` requests a second drain from its bucket, which holds ``burst`` requests more. We keep
nginx's semantics and write them as GCRA (the generic cell rate algorithm), which stores one
number per key instead of nginx's pair (excess, last time): the *theoretical arrival time*
``tat``, the moment the bucket will be empty again. With ``interval = 1 / rate``:

* a request at ``now`` finds the bucket at level ``(max(tat, now) - now) / interval`` requests;
* a level above ``burst`` is too much: it is refused, and the bucket is left as it was (nginx
  counts no refused request either), with ``Retry-After`` the time until the level is
  ``burst`` again;
* otherwise it is admitted and ``tat`` moves on by one interval. nginx, by default, delays an
  admitted request until the requests ahead of it in the bucket have drained: by ``level *
  interval``. ``nodelay`` answers the burst at once (the bucket still fills, so the burst is
  spent); ``delay = N`` is nginx's two-stage limiting: the first ``N`` requests of a burst go at
  once, the ones past them are delayed by their level past ``N``.

So a key sending 100 requests at once to ``rate = 5r/s, burst = 10`` has 11 admitted (the
first at level 0, then levels 1..10: answered at once with ``nodelay``, else spread over two
seconds) and 89 refused, as nginx answers them; after that it gets one every 200 ms.

The times are ``time.monotonic()`` seconds, which every process of the machine shares: the
fronts keep their keys' ``tat`` in one table (front/limittable.py). Pure; no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from typing import NamedTuple

# "5r/s", "30r/m" (nginx's forms); a rate may have a fraction: "0.5r/s".
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*r/([sm])\s*")
_PER_UNIT = {"s": 1.0, "m": 60.0}
# Float times: a level computed as 9.999999 must count as 10, not refuse the 11th request.
_SLACK = 1e-9
# Retry-After is whole seconds (RFC 9110 section 10.2.3); never 0, which would invite a retry
# storm at once.
MIN_RETRY_AFTER = 1


class Outcome(enum.Enum):
    """What becomes of one request."""

    PASS = "pass"  # on at once
    DELAY = "delay"  # on after Decision.seconds, waiting in the front
    REFUSE = "refuse"  # answered 429 (or limit-status); Retry-After from Decision.seconds


PASS, DELAY, REFUSE = Outcome.PASS, Outcome.DELAY, Outcome.REFUSE


class Decision(NamedTuple):
    outcome: Outcome
    seconds: float  # DELAY: how long; REFUSE: until a request would be admitted; PASS: 0
    tat: float  # the key's theoretical arrival time from now on


@dataclasses.dataclass(frozen=True)
class RateRule:
    """One location's limit_req: `per_second` requests a second, a bucket of `burst` more, of
    which the first `undelayed` go on without waiting (0: nginx's default, every excess request
    waits; `burst`: nodelay)."""

    per_second: float
    burst: int = 0
    undelayed: int = 0

    def __post_init__(self) -> None:
        if not self.per_second > 0:
            raise ValueError("a rate must be more than 0 requests a second")
        if self.burst < 0 or self.undelayed < 0:
            raise ValueError("burst and delay must not be negative")

    @property
    def interval(self) -> float:
        return 1.0 / self.per_second


def parse_rate(text: str) -> float:
    """Requests a second from nginx's form: ``5r/s``, ``30r/m``."""
    found = _RATE.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is not a rate: write it as nginx does, '5r/s' or '30r/m'")
    per_second = float(found.group(1)) / _PER_UNIT[found.group(2)]
    if per_second <= 0:
        raise ValueError(f"{text!r}: a rate must be more than 0")
    return per_second


def admit(rule: RateRule, tat: float, now: float) -> Decision:
    """The fate of a request at `now` for a key whose bucket empties at `tat` (a new key: any
    time not after `now`)."""
    interval = rule.interval
    start = tat if tat > now else now
    level = (start - now) / interval  # requests in the bucket ahead of this one
    if level > rule.burst + _SLACK:
        wait = (level - rule.burst) * interval
        return Decision(REFUSE, wait, tat)
    over = level - rule.undelayed
    if over <= _SLACK:
        return Decision(PASS, 0.0, start + interval)
    return Decision(DELAY, over * interval, start + interval)


def retry_after(seconds: float) -> int:
    """Whole seconds for a Retry-After field: rounded up, at least one."""
    return max(MIN_RETRY_AFTER, math.ceil(seconds - _SLACK))
