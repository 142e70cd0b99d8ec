"""Rules per location, judged in the front when a request head is complete.

Theory of operation
-------------------
The router (maitred.front.router) calls :meth:`Rules.judge` once per request, as soon as its
head is parsed: after the proxy rules settled who the client is and the request's app is
chosen, before a byte of its body is read and long before it could reach a worker thread. So
a refused request costs the front a few lookups and holds no thread.

:class:`Rules` holds one :class:`maitred.locations.LocationTable` per app (the server's
``[[locations]]`` and the app's own, combined as maitred.locations says) whose values are
:class:`Rule`: a location made ready to judge (its address lists compiled, its htpasswd file
loaded, its header lines encoded). A request in no location is judged by :attr:`Rules.default`:
the server's --allow/--deny and limit-request-body. The rule goes with the request as
``Exchange.location``, so what happens later reads it there: the headers every response of
the location carries (front/exchange.py) and whether it is logged (front/main.py).

What a rule checks, in this order (nginx's phases: rewrite, preaccess, access, the body):

1. --redirect-https: a request that came over plain HTTP gets 301 to the same URL on https;
2. ``redirect``: 301 (or ``redirect-status``) to its URL, ``$scheme``, ``$host`` and
   ``$request_uri`` replaced by the request's;
3. ``rate`` and ``limit-conn`` (front/limits.py, in the table the fronts share): 429 (or
   ``limit-status``) with Retry-After; a request within the burst may be held back
   (``Exchange.not_before``, which the router waits for before dispatch). Before access and
   auth, as in nginx, so that guessing passwords is slowed down too;
4. ``allow``/``deny`` (maitred.access): 403;
5. ``auth-basic``: 401 with ``WWW-Authenticate: Basic realm="..."`` (maitred.htpasswd; 503
   when the front's time for checking passwords is spent);
6. ``max-body-size`` (else limit-request-body) against Content-Length: 413. A chunked body is
   counted as it arrives (maitred.front.spool.Body) and refused as soon as it passes.

A refusal is an :class:`HTTPError` with its header lines. A request without a body is
answered in its turn on a connection that stays open (the router answers it instead of
routing it); one with a body is answered at once (or after the responses it is pipelined
behind) and its connection closed with a lingering close, its body never read into a spool.

The --health-path check is judged by no rule: load balancers must reach it as they always did.

Owned by the event loop thread.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from maitred.access import AccessList
from maitred.apps import App
from maitred.config import Config
from maitred.front.leakybucket import DELAY, REFUSE
from maitred.front.limits import Limiter, LimitRules, RateKeys, retry_after_field, rules_of
from maitred.front.limittable import LimitTable
from maitred.front.routes import host_name
from maitred.http.errors import BodyTooLarge, ProtocolError
from maitred.locations import Location, LocationTable, request_path

if TYPE_CHECKING:
    from maitred.front.exchange import Exchange
    from maitred.front.health import HealthCheck
    from maitred.front.router import Target
    from maitred.htpasswd import BasicAuth

FORBIDDEN, TOO_LARGE = 403, 413
# The name of the server's own limits in the shared limit table (a location's is its place).
SERVER_LIMITS = ""
HTTPS_REDIRECT = 301  # permanent: browsers remember it, as nginx's `return 301 https://...`


class Refusal(ProtocolError):
    """A request a rule refused (or redirects): its status and header lines. Made per refusal:
    one with a body is raised (its connection closes), and a raise pins a traceback."""

    def __init__(self, status: int, headers: bytes) -> None:
        super().__init__("refused by a location's rules", status)
        self.headers = headers


class HeaderEdit:
    """Response header lines a location adds, replacing the response's own of those names."""

    __slots__ = ("lines", "names", "present")

    def __init__(self, headers: Sequence[tuple[str, str]]) -> None:
        self.lines = b"".join(b"%s: %s\r\n" % (n.encode(), v.encode("latin-1")) for n, v in headers)
        self.names = tuple(n.lower().encode() + b":" for n, _ in headers)
        # One search in C for any field of these names: most heads have none.
        alternatives = b"|".join(re.escape(name) for name in self.names)
        self.present = re.compile(b"\n(?:" + alternatives + b")", re.IGNORECASE).search

    def __call__(self, head: bytes) -> bytes:
        """`head` (status line and fields, each line ending CRLF, without the empty line that
        ends it) with these lines in place of the fields of the same names."""
        if self.present(head) is None:
            return head + self.lines  # the common case: nothing to replace
        lines = head.split(b"\r\n")[:-1]  # the last is empty: the head ends with CRLF
        kept = [line for line in lines if not line.lower().startswith(self.names)]
        return b"\r\n".join(kept) + b"\r\n" + self.lines


class Rule:
    """A location made ready to judge requests (or the server's rules for those in none)."""

    __slots__ = (
        "access",
        "access_log",
        "auth",
        "body_limit",
        "edit",
        "limits",
        "location",
        "redirect",
    )

    def __init__(self, location: Location | None, cfg: Config) -> None:
        self.location = location
        allow = cfg.allow if location is None or location.allow is None else location.allow
        deny = cfg.deny if location is None or location.deny is None else location.deny
        self.access = AccessList(allow, deny) if allow or deny else None
        size = None if location is None else location.max_body_size
        self.body_limit = cfg.limit_request_body if size is None else size
        self.auth: BasicAuth | None = None
        self.edit: HeaderEdit | None = None
        self.access_log = True
        self.redirect: tuple[str, int] | None = None
        if location is not None:
            if location.auth_basic:
                from maitred.htpasswd import BasicAuth  # only where a location asks for it

                self.auth = BasicAuth(location.auth_basic, location.auth_basic_realm)
            if location.headers:
                self.edit = HeaderEdit(location.headers)
            self.access_log = location.access_log
            if location.redirect:
                self.redirect = (location.redirect, location.redirect_status)
        # A redirect is answered before any limit is counted, as nginx's `return` is.
        self.limits = limits_of(location, cfg) if self.redirect is None else None

    @property
    def error_lines(self) -> bytes:
        """The header lines the front's own answers in this location carry."""
        return self.edit.lines if self.edit is not None else b""

    def judge(self, exchange: Exchange) -> Refusal | None:
        """Why `exchange` may not go on (see the module), or None."""
        if self.redirect is not None:
            url, status = self.redirect
            return self.refuse(status, b"Location: %s\r\n" % expand(url, exchange))
        if self.access is not None and not self.access(exchange.peer[0]):
            return self.refuse(FORBIDDEN)
        if self.auth is not None:
            denied = self.auth.check(exchange.head.fields.get(b"authorization"))
            if denied is not None:
                return self.refuse(*denied)
        length = exchange.head.content_length
        if length is not None and self.body_limit and length > self.body_limit:
            return self.refuse(TOO_LARGE)
        return None

    def refuse(self, status: int, lines: bytes = b"") -> Refusal:
        return Refusal(status, lines + self.error_lines)

    def too_large(self) -> BodyTooLarge:
        """The error of a chunked body that passed the limit."""
        error = BodyTooLarge("request body too large")
        error.headers = self.error_lines
        return error


class Rules:
    """The rules of a front's requests: per app, its locations' and the server's."""

    def __init__(
        self,
        cfg: Config,
        apps: Sequence[App],
        health: HealthCheck | None = None,
        table: LimitTable | None = None,
    ) -> None:
        self.default = Rule(None, cfg)
        server = [(loc, Rule(loc, cfg)) for loc in cfg.locations]
        own = {app.label: [(loc, Rule(loc, app.cfg)) for loc in app.locations] for app in apps}
        self.tables = {  # by the app's label, as the router's targets name it
            label: LocationTable(server, rules) for label, rules in own.items()
        }
        self.no_app = LocationTable(server, [])  # a request no app takes: the server's
        self.redirect_https = cfg.redirect_https
        self.health = health
        # Rate and connection limits (front/limits.py), in the master's table shared by the
        # fronts; a front on its own (tests) makes one of its own.
        every = [self.default, *(r for _, r in server), *(r for o in own.values() for _, r in o)]
        self.limiter: Limiter | None = None
        if any(rule.limits is not None for rule in every):
            self.limiter = Limiter(table or LimitTable(cfg.limit_keys))

    @staticmethod
    def wanted(cfg: Config, apps: Sequence[App]) -> bool:
        """Whether there is anything to judge (without, the router asks nothing)."""
        return bool(
            cfg.locations
            or cfg.allow
            or cfg.deny
            or cfg.redirect_https
            or cfg.rate
            or cfg.limit_conn
            or any(app.locations for app in apps)
        )

    def judge(self, exchange: Exchange, target: Target | None) -> Refusal | None:
        """Find the request's location (its rule goes in ``exchange.location``) and judge
        it; the refusal to answer, or None when it goes on."""
        head = exchange.head
        health = self.health
        if health is not None and health.matches(head.target):
            return None
        if self.redirect_https and exchange.peer[4] == "http":
            lines = b"Location: %s\r\n" % expand("https://$host$request_uri", exchange)
            return Refusal(HTTPS_REDIRECT, lines)
        table = self.tables[target.app] if target is not None else self.no_app
        rule = table.match(request_path(head.target))
        if rule is None:
            rule = self.default
        exchange.location = rule
        limits = rule.limits
        if limits is not None:  # nginx's order: the limits before access and auth
            refusal = self._limit(exchange, rule, limits)
            if refusal is not None:
                return refusal
        return rule.judge(exchange)

    def _limit(self, exchange: Exchange, rule: Rule, limits: LimitRules) -> Refusal | None:
        """Count the request under its location's limits: a refusal, or None (it goes on, at
        once or once ``exchange.not_before`` has come: maitred.front.router holds it)."""
        limiter = self.limiter
        assert limiter is not None
        fields = exchange.head.fields
        verdict = limiter.judge(limits, exchange.peer[0], fields, time.monotonic())
        if verdict.held:
            exchange.limit_held = (limiter, verdict.held)  # released when it ends
        outcome = verdict.outcome
        if outcome is REFUSE:
            return rule.refuse(limits.status, retry_after_field(verdict.seconds))
        if outcome is DELAY:
            exchange.not_before = exchange.started + verdict.seconds
        return None


def server_rate(cfg: Config) -> RateKeys:
    """The server's limit_req, as its settings (--rate, --burst, ...) give it."""
    return RateKeys(cfg.rate, cfg.burst, cfg.nodelay, cfg.delay)


def limits_of(location: Location | None, cfg: Config) -> LimitRules | None:
    """A location's rate and connection limits: its own where it gives them, else the
    server's (--rate, --limit-conn, ...), whose buckets every location without its own
    shares, as nginx's locations inherit a server's limit_req."""
    place = "" if location is None else f"{location.app}:{location.shown_path}"
    rate, rate_name = server_rate(cfg), SERVER_LIMITS
    conn, conn_name = cfg.limit_conn, SERVER_LIMITS
    key, status = cfg.limit_key, cfg.limit_status
    if location is not None:
        if location.rate is not None:
            rate, rate_name = location.rate_keys, place
        if location.limit_conn is not None:
            conn, conn_name = location.limit_conn, place
        if location.limit_key is not None:
            key = location.limit_key
        if location.limit_status is not None:
            status = location.limit_status
    return rules_of(rate, rate_name, conn, conn_name, key, status)


def parser_body_limit(cfg: Config, apps: Sequence[App]) -> int:
    """The body limit the front's parsers enforce: limit-request-body, unless a location sets
    its own; then 0, and the rules enforce each request's (the parser cannot know which
    location a request is in)."""
    locations = [*cfg.locations, *(loc for app in apps for loc in app.locations)]
    if any(loc.max_body_size is not None for loc in locations):
        return 0
    return cfg.limit_request_body


def expand(url: str, exchange: Exchange) -> bytes:
    """A redirect's URL with $scheme, $host and $request_uri of `exchange` in place."""
    head = exchange.head
    hosts = head.fields.get(b"host")
    # nginx's $host: the name, lower case, without the port.
    host = host_name(hosts[0]) if hosts else exchange.peer[2].encode("latin-1")
    target = head.target
    if not target.startswith(b"/"):  # absolute-form: its path and query
        rest = target.partition(b"://")[2]
        target = b"/" + rest.partition(b"/")[2]
    values = {
        "$scheme": exchange.peer[4].encode("ascii"),
        "$host": host,
        "$request_uri": target,
    }
    out = url.encode("latin-1")
    # Longest first: "$host" must not eat the start of a longer name (there is none today).
    for name in sorted(values, key=len, reverse=True):
        out = out.replace(name.encode(), values[name])
    return out
