"""Trailing tabs after ``Transfer-Encoding: chunked``: whitespace llhttp mistakes for a coding.

RFC 9110 (section 5.5) puts optional whitespace (OWS: spaces and tabs) around every field value,
and it is not part of the value, so ``Transfer-Encoding: chunked<TAB>`` frames a chunked body
exactly as ``Transfer-Encoding: chunked`` does. llhttp skips spaces after ``chunked`` but reads a
tab there as the start of another transfer coding, then refuses the request because chunked is
no longer the final coding. Clients and proxies that pad values with tabs got a 400.

Theory of operation: the parser hands llhttp a space instead of such a tab. It does so only
where the tab is whitespace after the whole value ``chunked`` of a Transfer-Encoding field of a
request head, and nowhere else, so that nothing llhttp refuses for another reason becomes
acceptable (``chunked, identity``, ``chunked<TAB>identity``, obs-fold and bare CR stay refused):

* a memchr for a tab rules out almost all data at once (see ``RequestParser._feed``);
* :func:`candidate_tabs` then finds the tabs that end a line ``Transfer-Encoding: chunked``
  with its whitespace, right after a CRLF. The parser feeds llhttp up to each one and reads it
  as a space only if llhttp is then inside a request head: there a CRLF always ends a line
  (llhttp refuses bare CR and obs-fold), so the line is a field line. Were that CRLF from before
  this request (the end of a previous body), the line would be a request line beginning like
  a field name, which llhttp has already refused: no method begins with ``Transfer`` or any
  part of it.

What is left alone, and so still refused as before: a tab more than :data:`CONTEXT` bytes into
such a line; a request pipelined in the same read right behind a chunked body (llhttp alone knows
where a chunked body ends, and searching every chunked upload for the line would cost more than
parsing it); the rest of a read after a lookalike line inside a body (so that a body full of
them cannot make every one cost a call into llhttp).

The value the app sees then ends in a space where the client sent a tab: both are OWS.
"""

from __future__ import annotations

import re

# A Transfer-Encoding line valued `chunked` so far, up to its last tab; group 1 is its trailing
# whitespace. The CRLF is matched case-sensitively so that the search runs on that literal.
_TE_CHUNKED_TABS = re.compile(rb"\r\n(?i:transfer-encoding):[ \t]*(?i:chunked)([ \t]*\t)")
_TAB = 0x09
# How much of an incomplete head the parser keeps to find such a line when its tab comes in a
# later read: the field name and the value with generous whitespace.
CONTEXT = 128


def candidate_tabs(before: bytes, data: bytes, start: int) -> list[int]:
    """Offsets in `data` (from `start`) of tabs in the whitespace ending a Transfer-Encoding
    line valued ``chunked``; `before` is what was fed just before, for a line begun there."""
    tail = before[-CONTEXT:]
    joined = tail + data[start:]
    shift = start - len(tail)
    found = []
    for match in _TE_CHUNKED_TABS.finditer(joined):
        for pos in range(*match.span(1)):
            if joined[pos] == _TAB and pos + shift >= start:
                found.append(pos + shift)
    return found
