"""Rate and connection limits of a location, as a front applies them: nginx's ``limit_req``
and ``limit_conn``.

Theory of operation
-------------------
A location's keys (``rate``, ``burst``, ``nodelay``, ``delay``, ``limit-conn``, ``limit-key``,
``limit-status``; or the --rate, --burst, ... settings of the server) become one
:class:`LimitRules`. The front asks :meth:`Limiter.judge` once per request head, before the
body is read, with the client's key:

* ``limit-key = "address"`` (the default): the client address after the proxy rules
  (--forwarded-allow-ips, the PROXY protocol; front/proxy.py), never a header an untrusted
  client sent; ``limit-key = "header:X-Api-Key"``: the first value of that request header. A
  request without a key (no such header; a unix socket's client with no proxy to name it) is
  not counted, as nginx does with an empty key;
* the rate (front/leakybucket.py, in the table every front shares, front/limittable.py) says
  PASS, DELAY (the request waits in the front, holding no app thread and no place in the
  dispatcher's queue: Router holds it before dispatch) or REFUSE;
* ``limit-conn = N`` then counts the request among its key's requests in flight, across the
  fronts, as nginx's limit_conn counts requests being processed (not connections: an idle
  keep-alive connection holds nothing); over N, it is refused. The count is released when the
  exchange ends, however it ends (answered, dropped, cancelled): a request whose client left
  while an app thread runs it ends when the app returns, for until then it holds the thread
  that limit-conn is there to share.

A refused request is answered ``limit-status`` (429 Too Many Requests by default, RFC 6585;
nginx's default is 503, which a load balancer may read as the server being down) with
``Retry-After``: the whole seconds until the bucket has room again (1 for limit-conn).

Owned by the event loop thread.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any, NamedTuple

from maitred.front.leakybucket import PASS, REFUSE, Outcome, RateRule, parse_rate, retry_after
from maitred.front.limittable import NO_ROOM, LimitTable

log = logging.getLogger("maitred.error")

ADDRESS = "address"
HEADER = "header:"
DEFAULT_STATUS = 429
# A refused limit-conn request may retry once one of its key's requests ends: soon.
CONN_RETRY_AFTER = 1.0
# Keys in the shared table: the location's name, what is counted, the client's key.
_RATE_KIND, _CONN_KIND = b"\0r\0", b"\0c\0"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def parse_rate_text(value: Any) -> str:
    """a rate as nginx writes it, 5r/s or 30r/m (empty: none)"""
    if not isinstance(value, str):
        raise ValueError
    if value.strip():
        parse_rate(value)
    return value.strip()


def parse_key(value: Any) -> str:
    """ "address", or "header:NAME" (a request header)"""
    if not isinstance(value, str):
        raise ValueError
    text = value.strip()
    if text.lower() == ADDRESS:
        return ADDRESS
    name = text[len(HEADER) :].strip() if text.lower().startswith(HEADER) else ""
    if not _TOKEN.fullmatch(name):
        raise ValueError
    return HEADER + name


def parse_status(value: Any) -> int:
    """a status from 400 to 599 (429 or 503, most often)"""
    if isinstance(value, bool):
        raise ValueError
    status = int(value)
    if not 400 <= status <= 599:
        raise ValueError
    return status


@dataclasses.dataclass(frozen=True)
class LimitRules:
    """The limits of one location. `rate_name` and `conn_name` tell its keys apart from
    other locations' in the shared table (a location that takes the server's limit_req shares
    the server's buckets, as nginx's locations share a zone)."""

    rate: RateRule | None = None
    conn: int = 0  # requests in flight per key; 0: no limit
    header: bytes = b""  # the key's request header (lower case); b"": the client address
    status: int = DEFAULT_STATUS
    rate_name: bytes = b""
    conn_name: bytes = b""


@dataclasses.dataclass(frozen=True)
class RateKeys:
    """nginx's limit_req as a location or the server gives it (rate "": none)."""

    rate: str = ""
    burst: int = 0
    nodelay: bool = False
    delay: int = 0

    def rule(self) -> RateRule | None:
        """The bucket's rule; raises ValueError when the keys do not go together."""
        if not self.rate:
            if self.burst or self.nodelay or self.delay:
                raise ValueError("burst, nodelay and delay need a rate")
            return None
        if self.nodelay and self.delay:
            raise ValueError("nodelay and delay exclude each other (nodelay is delay = burst)")
        if self.delay > self.burst:
            raise ValueError(f"delay {self.delay} is more than burst {self.burst}")
        undelayed = self.burst if self.nodelay else self.delay
        return RateRule(parse_rate(self.rate), self.burst, undelayed)


def rules_of(
    rate: RateKeys, rate_name: str, conn: int, conn_name: str, key: str, status: int
) -> LimitRules | None:
    """A location's limits (None: it has none), each part named by where it was declared.
    Raises ValueError when the keys do not go together."""
    rule = rate.rule()
    if rule is None and not conn:
        return None
    header = key[len(HEADER) :].lower().encode("latin-1") if key != ADDRESS else b""
    names = (rate_name.encode("utf-8"), conn_name.encode("utf-8"))
    return LimitRules(rule, conn, header, status, *names)


class Verdict(NamedTuple):
    outcome: Outcome
    seconds: float  # DELAY: how long; REFUSE: until it may retry
    held: int  # the limit-conn count it holds (for Limiter.release); 0: none


NOTHING = Verdict(PASS, 0.0, 0)


class Limiter:
    """A front's side of the shared limit table."""

    def __init__(self, table: LimitTable) -> None:
        self.table = table

    def judge(
        self, rules: LimitRules, address: str, fields: dict[bytes, list[bytes]], now: float
    ) -> Verdict:
        """The fate of a request under `rules` from the client at `address` (as the proxy
        rules say) with header `fields`, at `now` (time.monotonic())."""
        if rules.header:
            given = fields.get(rules.header)
            key = given[0] if given else b""
        else:
            key = address.encode("latin-1")
        if not key:
            return NOTHING
        outcome, seconds = PASS, 0.0
        if rules.rate is not None:
            decision = self.table.rate(rules.rate_name + _RATE_KIND + key, rules.rate, now)
            if decision.outcome is REFUSE:
                return Verdict(REFUSE, decision.seconds, 0)
            outcome, seconds = decision.outcome, decision.seconds
        held = 0
        if rules.conn:
            held = self.table.acquire(rules.conn_name + _CONN_KIND + key, rules.conn, now)
            if not held:
                return Verdict(REFUSE, CONN_RETRY_AFTER, 0)
            if held == NO_ROOM:
                log.debug("limit-conn: no room in the table for a key; counted as free")
                held = 0
        return Verdict(outcome, seconds, held)

    def release(self, held: int) -> None:
        """A request counted by limit-conn is over."""
        self.table.release(held)


def retry_after_field(seconds: float) -> bytes:
    """The Retry-After header line of a refusal."""
    return b"Retry-After: %d\r\n" % retry_after(seconds)
