"""Who may enter: allow and deny lists of client addresses. Pure; no I/O.

Theory of operation
-------------------
An :class:`AccessList` is made once from an ``allow`` and a ``deny`` list (addresses, CIDR
blocks of IPv4 and IPv6, ``all``, ``unix`` for clients of a unix socket, which have no
address) and asked once per request with the client's address, as the proxy rules left it.

The rule: **the most specific entry that holds the address decides**; on a tie (the same
block in both lists) deny wins; an address no entry holds is let in only when there is no
``allow`` list (``allow`` alone means "and nobody else", as nginx's ``deny all`` after its
``allow`` lines). nginx instead takes the first matching line in the order written; lists
written from the specific to the general, which is how nginx's are written, mean the same
under both rules (``allow 10.0.0.5; deny 10.0.0.0/8;`` is ``allow = ["10.0.0.5"]``,
``deny = ["10.0.0.0/8"]``); a TOML table has no order between its two keys to go by.

An IPv4 client on an IPv6 listener (``::ffff:10.0.0.1``) is judged as its IPv4 address.
Addresses are parsed once and their verdicts remembered, up to :data:`REMEMBERED` of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

ALL, UNIX = "all", "unix"
# Verdicts remembered per list: a client's requests cost a dict lookup, not an address parse.
# Past this many clients the memory is dropped and refilled (a flood of addresses costs parses).
REMEMBERED = 4096
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AccessList:
    """The verdict of an allow and a deny list on client addresses (see the module)."""

    def __init__(self, allow: Iterable[str], deny: Iterable[str]) -> None:
        entries: list[tuple[int, bool, Network | None]] = []  # (prefix length, allowed, net)
        for allowed, items in ((True, allow), (False, deny)):
            for item in items:
                entries.extend(_entries(item, allowed))
        # Most specific first; on a tie deny (False) first.
        entries.sort(key=lambda e: (-e[0], e[1]))
        self.entries = entries
        self.default = not any(allowed for _, allowed, _ in entries)  # nobody listed as allowed
        self.unix = next((allowed for _, allowed, net in entries if net is None), self.default)
        self.seen: dict[str, bool] = {}

    def __call__(self, address: str) -> bool:
        """Whether the client at `address` ("" for a unix socket's) may enter."""
        verdict = self.seen.get(address)
        if verdict is None:
            verdict = self._judge(address)
            if len(self.seen) >= REMEMBERED:
                self.seen.clear()
            self.seen[address] = verdict
        return verdict

    def _judge(self, address: str) -> bool:
        if not address:
            return self.unix
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])  # no IPv6 zone
        except ValueError:
            return False  # not an address we can judge: refused
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        for _, allowed, net in self.entries:
            if net is not None and ip.version == net.version and ip in net:
                return allowed
        return self.default


def _entries(item: str, allowed: bool) -> list[tuple[int, bool, Network | None]]:
    if item == UNIX:
        return [(-1, allowed, None)]  # below every network: only unix peers reach it
    if item == ALL:
        return [(0, allowed, ipaddress.ip_network("0.0.0.0/0")), (0, allowed, _ALL_V6)]
    net = ipaddress.ip_network(item, strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= _MAPPED_BITS:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            # ::ffff:10.0.0.0/104 is 10.0.0.0/8: clients are judged by their IPv4 address
            v4 = ipaddress.ip_network(f"{mapped}/{net.prefixlen - _MAPPED_BITS}")
            return [(v4.prefixlen, allowed, v4)]
    return [(net.prefixlen, allowed, net)]


_ALL_V6 = ipaddress.ip_network("::/0")
_MAPPED_BITS = 96  # ::ffff:0:0/96 holds the IPv4 addresses
