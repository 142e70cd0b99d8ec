"""What a shared cache may store and for how long (RFC 9111, RFC 9213, RFC 5861). Pure; no I/O.

Theory of operation
-------------------
The front's response cache (maitred.front.cache) asks three questions here, each a pure function
of header fields (``dict[bytes, list[bytes]]``, names in lower case, as the parser gives them)
and of times passed in, so every rule is unit-tested over tables of headers without a socket:

* :func:`request_rule`: may this request be answered from the cache, and may its response be
  stored? (``Cache-Control: no-store`` / ``no-cache`` / ``max-age=0`` and ``Pragma: no-cache``
  from the client.)
* :func:`policy`: may this response be stored, and if so its :class:`Policy` (freshness
  lifetime, initial age, stale allowances, Vary); if not, the :class:`Refusal` that says why.
  The rules, in the order they are checked:

  1. only GET and HEAD, only a final status that is cacheable by default (RFC 9110 15.1);
  2. never a response that sets a cookie: it belongs to one client;
  3. ``no-store`` and ``private`` (a shared cache); ``no-cache`` only with a validator
     (``ETag`` or ``Last-Modified``): such a response is kept stale from the start, and each
     use of it is revalidated with the app by a conditional request (maitred.front.cache);
     without a validator there is nothing to revalidate with, and it is not kept;
  4. a request with ``Authorization`` only when the response says a shared cache may keep it
     (``public``, ``s-maxage`` or ``must-revalidate``, RFC 9111 section 3.5);
  5. ``Vary: *`` never (no request could ever match it);
  6. the freshness lifetime (section 4.2.1): the targeted ``CDN-Cache-Control`` of RFC 9213,
     when the response has it, replaces ``Cache-Control`` and ``Expires`` altogether; then
     ``s-maxage``, ``max-age``, ``Expires`` minus ``Date``. A response that says nothing of
     its freshness (``public`` alone, or nothing at all) gets the operator's default
     (``--cache-rule``) if there is one, as nginx's ``proxy_cache_valid`` does; one that
     says it is stale already (``max-age=0``, a past or invalid ``Expires``) is not stored
     unless it allows serving it stale or has a validator to revalidate it with.

* :func:`current_age` (section 4.2.3) and :func:`secondary_key` (section 4.1: the request's
  values of the fields the response's Vary names, which select one stored variant).

Nothing here knows sockets, the event loop or the front's memory.
"""

from __future__ import annotations

import email.utils
import enum
from dataclasses import dataclass

Fields = dict[bytes, list[bytes]]

# Statuses a cache may store without an explicit say-so, and so the only ones maitred keeps
# (RFC 9110 section 15.1; 206 left out: maitred stores whole bodies only).
CACHEABLE_STATUSES = frozenset((200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501))
CACHEABLE_METHODS = frozenset((b"GET", b"HEAD"))
# Fields a stored response never replays: hop-by-hop and per-connection ones (RFC 9111 section
# 3.1), the ones the front writes afresh for each answer (Date, Age, the framing), and cookies.
NOT_REPLAYED = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"set-cookie",
        b"date",
        b"age",
        b"content-length",
    )
)
# An Age or delta-seconds past this is read as this (RFC 9111 section 1.2.2: 2^31).
MAX_DELTA = 2**31


class Refusal(enum.Enum):
    """Why a response is not stored."""

    METHOD = "method"
    STATUS = "status"
    SET_COOKIE = "set-cookie"
    NO_STORE = "no-store"
    PRIVATE = "private"
    NO_CACHE = "no-cache"
    AUTHORIZATION = "authorization"
    VARY_STAR = "vary-star"
    NO_LIFETIME = "no-lifetime"


class RequestRule(enum.Enum):
    """What a request's own caching fields allow."""

    ANY = "any"  # served from a fresh entry, its response stored
    REFRESH = "refresh"  # goes to the app (no-cache, max-age=0), its response may be stored
    NO_STORE = "no-store"  # goes to the app, and its response is not stored


@dataclass(frozen=True, slots=True)
class Policy:
    """How a stored response may be used."""

    lifetime: float  # seconds it is fresh for, counted from age 0
    initial_age: float  # its age when it was stored (corrected_initial_age)
    stale_while_revalidate: float  # seconds past its lifetime it may be served while refreshed
    stale_if_error: float  # seconds past its lifetime it may stand in for an app's error
    vary: tuple[bytes, ...]  # the request fields that select it, lower case, sorted
    shared_with_authorization: bool  # a request with Authorization may be answered from it


def directives(values: list[bytes] | None) -> dict[bytes, bytes]:
    """A Cache-Control field's directives: lower-case name -> argument (b"" when none).
    Several field lines and comma-separated lists are one list; quotes are removed."""
    found: dict[bytes, bytes] = {}
    for value in values or ():
        for item in value.split(b","):
            name, _, argument = item.partition(b"=")
            name = name.strip().lower()
            if name:
                found.setdefault(name, argument.strip().strip(b'"'))
    return found


def delta_seconds(argument: bytes | None) -> int | None:
    """A delta-seconds argument, or None when it is missing or malformed."""
    if argument is None or not argument.isdigit():
        return None
    return min(int(argument), MAX_DELTA)


def http_date(value: bytes) -> float | None:
    """An HTTP-date as a POSIX time, or None when it does not parse."""
    parsed = email.utils.parsedate_tz(value.decode("latin-1"))
    return None if parsed is None else float(email.utils.mktime_tz(parsed))


def request_rule(fields: Fields) -> RequestRule:
    """What the request's Cache-Control (or, without one, Pragma) allows (RFC 9111 5.2.1)."""
    control = fields.get(b"cache-control")
    if control is None:
        pragma = fields.get(b"pragma")
        if pragma is not None and b"no-cache" in directives(pragma):
            return RequestRule.REFRESH
        return RequestRule.ANY
    said = directives(control)
    if b"no-store" in said:
        return RequestRule.NO_STORE
    if b"no-cache" in said or said.get(b"max-age") == b"0":
        return RequestRule.REFRESH
    return RequestRule.ANY


def vary_names(fields: Fields) -> tuple[bytes, ...] | None:
    """The request fields a response varies on, sorted; None for ``Vary: *``."""
    names: set[bytes] = set()
    for value in fields.get(b"vary", ()):
        for name in value.split(b","):
            name = name.strip().lower()
            if name == b"*":
                return None
            if name:
                names.add(name)
    return tuple(sorted(names))


def secondary_key(names: tuple[bytes, ...], fields: Fields) -> tuple[bytes, ...]:
    """The request's values of the Vary fields, each field's lines joined and its
    whitespace around commas normalised (RFC 9111 section 4.1)."""
    return tuple(
        b",".join(part.strip() for line in fields.get(name, ()) for part in line.split(b","))
        for name in names
    )


def current_age(
    age_value: float, date_value: float, request_time: float, response_time: float, now: float
) -> float:
    """RFC 9111 section 4.2.3, all times POSIX seconds."""
    apparent_age = max(0.0, response_time - date_value)
    response_delay = response_time - request_time
    corrected_age_value = age_value + response_delay
    corrected_initial_age = max(apparent_age, corrected_age_value)
    resident_time = now - response_time
    return corrected_initial_age + resident_time


def _first(fields: Fields, name: bytes) -> bytes | None:
    values = fields.get(name)
    return values[0] if values else None


def _lifetime(said: dict[bytes, bytes], fields: Fields, targeted: bool) -> float | None:
    """The explicit freshness lifetime (RFC 9111 section 4.2.1), or None when the response
    gives none. A malformed or past Expires is a lifetime of 0 (already stale)."""
    for name in (b"s-maxage", b"max-age"):
        if name in said:
            value = delta_seconds(said[name])
            return 0.0 if value is None else float(value)
    expires = None if targeted else _first(fields, b"expires")
    if expires is None:
        return None
    expiry = http_date(expires)
    date = http_date(_first(fields, b"date") or b"")
    if expiry is None or date is None:
        return 0.0
    return max(0.0, expiry - date)


def policy(
    method: bytes,
    status: int,
    request: Fields,
    response: Fields,
    request_time: float,
    response_time: float,
    default_ttl: float | None = None,
    default_stale_if_error: float = 0.0,
) -> Policy | Refusal:
    """Whether a shared cache may store this response, and how it may use it (see the module
    docstring for the rules). Times are POSIX seconds: when the request went to the app and
    when its response came back; `default_ttl` is the lifetime of a response that gives none.
    """
    if method not in CACHEABLE_METHODS:
        return Refusal.METHOD
    if status not in CACHEABLE_STATUSES:
        return Refusal.STATUS
    if b"set-cookie" in response:
        return Refusal.SET_COOKIE
    targeted = b"cdn-cache-control" in response
    said = directives(response.get(b"cdn-cache-control" if targeted else b"cache-control"))
    if b"no-store" in said:
        return Refusal.NO_STORE
    if b"private" in said:
        return Refusal.PRIVATE
    validated = b"etag" in response or b"last-modified" in response
    no_cache = b"no-cache" in said
    if no_cache and not validated:
        return Refusal.NO_CACHE
    shared_auth = bool({b"public", b"s-maxage", b"must-revalidate"} & said.keys())
    if b"authorization" in request and not shared_auth:
        return Refusal.AUTHORIZATION
    vary = vary_names(response)
    if vary is None:
        return Refusal.VARY_STAR
    # no-cache (with its validator) says the app wants it kept, and revalidated each time.
    lifetime = 0.0 if no_cache else _lifetime(said, response, targeted)
    if lifetime is None:  # it says nothing of how long it is fresh
        if default_ttl is None:
            return Refusal.NO_LIFETIME
        lifetime = default_ttl
    # no-cache: never used without the app's say-so, so never served stale either;
    # must-revalidate: not served stale once past its lifetime.
    stale = no_cache or b"must-revalidate" in said or b"proxy-revalidate" in said
    revalidate = 0 if stale else delta_seconds(said.get(b"stale-while-revalidate")) or 0
    if_error = delta_seconds(said.get(b"stale-if-error"))
    if if_error is None:
        if_error = int(default_stale_if_error)
    if stale:
        if_error = 0
    if lifetime <= 0 and not revalidate and not if_error and not validated:
        return Refusal.NO_LIFETIME
    age_value = delta_seconds(_first(response, b"age")) or 0
    date_value = http_date(_first(response, b"date") or b"")
    initial = current_age(
        age_value,
        response_time if date_value is None else date_value,
        request_time,
        response_time,
        response_time,
    )
    return Policy(lifetime, initial, revalidate, if_error, vary, shared_auth)
