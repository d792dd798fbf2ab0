"""Reference models of the kernel's hashing and locality schedulers: dh, sh, mh, lblc, lblcr.

Followed sources (Linux, net/netfilter/ipvs/ unless noted): ip_vs_dh.c, ip_vs_sh.c, ip_vs_mh.c,
ip_vs_lblc.c, ip_vs_lblcr.c, include/linux/hash.h (hash_32), lib/siphash.c and
include/linux/siphash.h (hsiphash), include/net/ip_vs.h (ip_vs_dest_conn_overhead) and
ip_vs_ctl.c (__ip_vs_update_dest). Constants are those of a default x86_64 build, which the
Debian kernels under test use (CONFIG_IP_VS_SH_TAB_BITS=8, CONFIG_IP_VS_MH_TAB_INDEX=12).

Conventions shared by all models here:

* Addresses enter the hashes in host byte order, as the kernel's ``ntohl(addr)``: 10.0.0.1 is
  0x0A000001. An IPv6 address is folded like the kernel's ``addr_fold`` (XOR of its four 32-bit
  words). Ports enter as ``ntohs(port)``, i.e. the plain port number.
* ``svc->destinations`` order: ip_vs_ctl.c adds a new real server with ``list_add_rcu`` (at the
  head), so the list, and the netlink dump that walks it, shows the most recently added server
  first. Models take the list order as given (the dump order); ``list_order`` turns an order of
  additions into it.
* A real server is identified, as in the kernel, by (address, port): tables and caches hold that
  key and look the current :class:`Dest` up at schedule time, the way the kernel holds a pointer
  to ``struct ip_vs_dest`` and reads its live weight and flags.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping, Sequence

from ._base import (
    Dest,
    Flow,
    Model,
    conn_overhead,
    dest_key,
    is_available,
    weighted_least,
)

__all__ = [
    "DH_TAB_SIZE",
    "GOLDEN_RATIO_32",
    "HASH_MODELS",
    "LBLC_MAX_SIZE",
    "MH_HASH1",
    "MH_HASH2",
    "MH_PRIMES",
    "MH_TAB_BITS",
    "MH_TAB_SIZE",
    "SH_TAB_SIZE",
    "DhModel",
    "LblcModel",
    "LblcrModel",
    "MhModel",
    "ShModel",
    "addr_fold",
    "disruption",
    "hash_32",
    "hsiphash",
    "lblc_overloaded",
    "mh_hashkey",
    "siphash",
    "slot_shares",
]

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF

# Protocols whose first 4 transport bytes are (sport, dport): ip_vs_{sh,mh}_get_port
_PORT_PROTOCOLS = frozenset({6, 17, 132})  # TCP, UDP, SCTP

DestKey = tuple[str, int]


# ---------------------------------------------------------------------------------------------
# include/linux/hash.h


GOLDEN_RATIO_32 = 0x61C88647


def hash_32(val: int, bits: int) -> int:
    """hash_32(): the top ``bits`` bits of ``val * GOLDEN_RATIO_32`` modulo 2**32.

    x86_64 has no arch override (HAVE_ARCH__HASH_32), so the generic version applies.
    """
    if not 0 < bits <= 32:
        raise ValueError(f"bits must be 1..32, not {bits}")
    return ((val * GOLDEN_RATIO_32) & _M32) >> (32 - bits)


def addr_fold(addr: str) -> int:
    """``ntohl(addr_fold)`` of the schedulers: IPv4 as a host-order u32, IPv6 XOR-folded."""
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        return int(ip)
    packed = ip.packed
    fold = 0
    for i in range(0, 16, 4):
        fold ^= int.from_bytes(packed[i : i + 4], "big")
    return fold


# ---------------------------------------------------------------------------------------------
# lib/siphash.c


_SIP_CONST = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)


def _rotl64(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M64


def _sipround(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _M64
    v1 = _rotl64(v1, 13) ^ v0
    v0 = _rotl64(v0, 32)
    v2 = (v2 + v3) & _M64
    v3 = _rotl64(v3, 16) ^ v2
    v0 = (v0 + v3) & _M64
    v3 = _rotl64(v3, 21) ^ v0
    v2 = (v2 + v1) & _M64
    v1 = _rotl64(v1, 17) ^ v2
    v2 = _rotl64(v2, 32)
    return v0, v1, v2, v3


def siphash(data: bytes, key: tuple[int, int], *, c_rounds: int = 2, d_rounds: int = 4) -> int:
    """SipHash-c-d of ``data`` with the 128-bit key given as two u64 words (k0, k1), 64-bit result.

    ``key`` is the kernel's ``siphash_key_t.key[2]``; for a byte key, k0 and k1 are its two
    little-endian halves. The defaults give SipHash-2-4; (1, 3) gives SipHash-1-3.
    """
    k0, k1 = key
    v0 = _SIP_CONST[0] ^ k0
    v1 = _SIP_CONST[1] ^ k1
    v2 = _SIP_CONST[2] ^ k0
    v3 = _SIP_CONST[3] ^ k1
    whole = len(data) - len(data) % 8
    for i in range(0, whole, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        for _ in range(c_rounds):
            v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
        v0 ^= m
    b = ((len(data) << 56) & _M64) | int.from_bytes(data[whole:], "little")
    v3 ^= b
    for _ in range(c_rounds):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0 ^= b
    v2 ^= 0xFF
    for _ in range(d_rounds):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def hsiphash(data: bytes, key: tuple[int, int]) -> int:
    """The kernel's ``hsiphash()`` on a 64-bit kernel (BITS_PER_LONG == 64).

    lib/siphash.c: "on 64-bit, we make HalfSipHash1-3 actually be SipHash1-3". The key
    (``hsiphash_key_t``, two ``unsigned long``) is used as the two 64-bit SipHash key words, the
    rounds are 1 compression and 3 finalization, and the 64-bit result is truncated to u32. The
    aligned, unaligned and word-at-a-time tails all read the message bytes little-endian, so the
    result depends only on the bytes. (32-bit kernels use real HalfSipHash-1-3: not modelled.)
    """
    return siphash(data, key, c_rounds=1, d_rounds=3) & _M32


# ---------------------------------------------------------------------------------------------
# helpers for the harness


def slot_shares(table: Sequence[str | None]) -> dict[str, float]:
    """Share of the table's slots held by each dest name (empty slots count in the total)."""
    shares: dict[str, float] = {}
    if not table:
        return shares
    for name in table:
        if name is not None:
            shares[name] = shares.get(name, 0.0) + 1.0
    return {name: n / len(table) for name, n in shares.items()}


def disruption(before: Sequence[str | None], after: Sequence[str | None]) -> float:
    """Share of slots whose dest changed between two tables of the same size.

    With a uniform flow hash onto the slots (mh, sh, dh) this is the share of new flows that
    go to a different server than before.
    """
    if len(before) != len(after):
        raise ValueError("tables differ in size")
    if not before:
        return 0.0
    return sum(a != b for a, b in zip(before, after, strict=True)) / len(before)


class _KeyedModel(Model):
    """Common lookup from a dest key to the current Dest."""

    def __init__(self, dests: Sequence[Dest], *, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(dests, flags=flags)
        self._by_key = {dest_key(d): d for d in self.dests}

    def update(self, dests: Sequence[Dest]) -> None:
        super().update(dests)
        self._by_key = {dest_key(d): d for d in self.dests}

    def _current(self, key: DestKey | None) -> Dest | None:
        return None if key is None else self._by_key.get(key)

    def _flow_port(self, flow: Flow, flag: str) -> int:
        """ip_vs_{sh,mh}_get_port: the source port for TCP/UDP/SCTP when the flag is set, else 0."""
        if flag in self.flags and flow.protocol in _PORT_PROTOCOLS:
            return flow.sport & 0xFFFF
        return 0


# ---------------------------------------------------------------------------------------------
# dh


DH_TAB_BITS = 8
DH_TAB_SIZE = 1 << DH_TAB_BITS


class DhModel(_KeyedModel):
    """Destination hashing (net/netfilter/ipvs/ip_vs_dh.c).

    Table: 256 buckets (CONFIG_IP_VS_DH_TAB_BITS default 8; there is no Kconfig option for it).
    ip_vs_dh_reassign fills bucket i with the (i mod n)-th real server of ``svc->destinations``
    (n servers, list order); weights play no part in the layout. The table is rebuilt when a
    server is added or removed (add_dest/del_dest; dh has no upd_dest, which would not change
    the layout anyway). With no servers every bucket is empty.

    Lookup: bucket = hash_32(ntohl(daddr), 8), i.e. the top 8 bits of daddr * 0x61C88647 (mod
    2**32). The bucket's server is returned unless its weight is <= 0 or it carries
    IP_VS_DEST_F_OVERLOAD (upper threshold reached); then the kernel finds no server (no
    fallback). Old kernels used ``(ntohl(addr) * 2654435761UL) & 255`` instead: not modelled.

    The choice is a pure function of the destination address, the server list order, weights
    and overload flags: deterministic. Note that for an ordinary VIP:port service every flow
    has the same daddr (the VIP), so all go to one server.
    """

    name = "dh"
    source = "net/netfilter/ipvs/ip_vs_dh.c"

    @staticmethod
    def bucket(daddr: str) -> int:
        """ip_vs_dh_hashkey()."""
        return hash_32(addr_fold(daddr), DH_TAB_BITS)

    def _layout(self) -> list[DestKey | None]:
        n = len(self.dests)
        if n == 0:
            return [None] * DH_TAB_SIZE
        return [dest_key(self.dests[i % n]) for i in range(DH_TAB_SIZE)]

    def table(self) -> list[str | None]:
        """Dest name per bucket."""
        return [d.name if (d := self._current(k)) else None for k in self._layout()]

    def schedule(self, flow: Flow) -> Dest | None:
        n = len(self.dests)
        if n == 0:
            return None
        dest = self.dests[self.bucket(flow.daddr) % n]
        return dest if is_available(dest) else None


# ---------------------------------------------------------------------------------------------
# sh


SH_TAB_BITS = 8
SH_TAB_SIZE = 1 << SH_TAB_BITS
SH_TAB_MASK = SH_TAB_SIZE - 1


class ShModel(_KeyedModel):
    """Source hashing (net/netfilter/ipvs/ip_vs_sh.c).

    Table: 256 buckets (CONFIG_IP_VS_SH_TAB_BITS=8). ip_vs_sh_reassign walks the buckets in
    order and ``svc->destinations`` cyclically: the current server fills consecutive buckets
    until it has ``weight`` of them (a counter is compared with ``>= weight`` after each
    bucket, so a weight-0 server still gets one bucket), then the walk moves to the next server,
    wrapping at the end of the list. Weights (2, 1, 1) give A A B C A A B C ... The table is
    rebuilt on every add, delete and update of a server.

    Hash: ``ip_vs_sh_hashkey(addr, port, offset) = (offset + hash_32(ntohs(port) + ntohl(addr),
    8)) & 255`` where the sum is a u32 (wraps), addr is the client's source address and port is
    the client's source port if the service has the "sh-port" flag (IP_VS_SVC_F_SCHED2) and the
    protocol is TCP, UDP or SCTP, else 0. Source address and port are added as numbers in host
    order, so 10.0.0.1:1 hashes like 10.0.0.2:0.

    Without "sh-fallback" the server of bucket hashkey(...,0) is returned unless it is
    unavailable (weight <= 0 or IP_VS_DEST_F_OVERLOAD): then none. With "sh-fallback"
    (IP_VS_SVC_F_SCHED1) an unavailable first choice makes the kernel try, for offset = 0..255,
    the bucket ``hashkey(roffset)`` with ``roffset = (offset + ihash) % 256``, i.e. bucket
    ``(offset + 2 * ihash) & 255`` (the original hash ``ihash`` is added twice: the kernel's
    own arithmetic), and returns the first available server found.

    Deterministic: the choice depends only on the source address (and port), list order,
    weights and overload flags.
    """

    name = "sh"
    source = "net/netfilter/ipvs/ip_vs_sh.c"
    flags_supported = frozenset({"sh-fallback", "sh-port"})

    def __init__(self, dests: Sequence[Dest], *, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(dests, flags=flags)
        self._buckets = self._reassign()

    def update(self, dests: Sequence[Dest]) -> None:
        super().update(dests)
        self._buckets = self._reassign()

    def _reassign(self) -> list[DestKey | None]:
        if not self.dests:
            return [None] * SH_TAB_SIZE
        buckets: list[DestKey | None] = []
        i = d_count = 0
        for _ in range(SH_TAB_SIZE):
            dest = self.dests[i]
            buckets.append(dest_key(dest))
            d_count += 1
            if d_count >= dest.weight:
                i = (i + 1) % len(self.dests)
                d_count = 0
        return buckets

    @staticmethod
    def hashkey(saddr: str, port: int, offset: int = 0) -> int:
        """ip_vs_sh_hashkey()."""
        return (offset + hash_32((port + addr_fold(saddr)) & _M32, SH_TAB_BITS)) & SH_TAB_MASK

    def table(self) -> list[str | None]:
        """Dest name per bucket."""
        return [d.name if (d := self._current(k)) else None for k in self._buckets]

    def schedule(self, flow: Flow) -> Dest | None:
        port = self._flow_port(flow, "sh-port")
        ihash = self.hashkey(flow.saddr, port)
        dest = self._current(self._buckets[ihash])
        if dest is None:
            return None
        if is_available(dest):
            return dest
        if "sh-fallback" not in self.flags:
            return None
        for offset in range(SH_TAB_SIZE):
            roffset = (offset + ihash) % SH_TAB_SIZE
            dest = self._current(self._buckets[self.hashkey(flow.saddr, port, roffset)])
            if dest is None:
                break
            if is_available(dest):
                return dest
        return None


# ---------------------------------------------------------------------------------------------
# mh


MH_PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
MH_TAB_INDEX_CONFIG = 12  # CONFIG_IP_VS_MH_TAB_INDEX (Kconfig default; Debian uses it)
MH_TAB_BITS = MH_TAB_INDEX_CONFIG // 2  # IP_VS_MH_TAB_BITS = 6
MH_TAB_SIZE = MH_PRIMES[MH_TAB_INDEX_CONFIG - 8]  # primes[4] = 4093
# generate_hash_secret(): fixed, not random; each unsigned long key word holds the constant
MH_HASH1 = (2654435761, 2654435761)  # 0x9E3779B1 twice
MH_HASH2 = (2654446892, 2654446892)  # 0x9E37A52C twice


def mh_hashkey(addr: str, port: int, key: tuple[int, int], offset: int = 0) -> int:
    """ip_vs_mh_hashkey(): hsiphash of the u32 ``offset + ntohs(port) + ntohl(addr)``.

    The u32 is hashed as the 4 bytes it has in memory on x86_64 (little-endian).
    """
    v = (offset + port + addr_fold(addr)) & _M32
    return hsiphash(v.to_bytes(4, "little"), key)


class MhModel(_KeyedModel):
    """Maglev hashing (net/netfilter/ipvs/ip_vs_mh.c), after Eisenbud et al., NSDI'16, 3.4.

    Table size M = primes[CONFIG_IP_VS_MH_TAB_INDEX - 8] = 4093 with the default index 12
    (primes 251, 509, ..., 131071 for index 8..17).

    Keys: generate_hash_secret() sets fixed constants, the same for every service and boot:
    hash1 = {2654435761, 2654435761}, hash2 = {2654446892, 2654446892} (hsiphash_key_t words).
    The hash is ``hsiphash(&v, 4, key)`` of the u32 ``v = offset + ntohs(port) + ntohl(addr)``,
    which on a 64-bit kernel is SipHash-1-3 with k0 = key[0], k1 = key[1], truncated to u32.

    Permutation (ip_vs_mh_permutate), per real server in list order, from the server's own
    address and port: ``offset = h(hash1) % M``, ``skip = h(hash2) % (M - 1) + 1``.

    Weights (from ``last_weight``: the latest non-zero weight, or the weight given when the
    server was added; ip_vs_ctl.c __ip_vs_update_dest): g = gcd of the positive last_weights,
    ``rshift = max(0, fls(max_last_weight / g) - 6)`` (6 = IP_VS_MH_TAB_BITS = index / 2),
    ``turns = ((lw / g) >> rshift) or (1 if lw else 0)``. If g < 1 (no positive last_weight)
    the table is emptied and nothing is scheduled.

    Population (ip_vs_mh_populate): repeated rounds over the servers in list order, skipping
    those with turns 0; a server takes ``turns`` slots in a row, each its next preferred free
    slot (position ``offset``, then ``+ skip`` mod M while taken), until all M slots are set.
    The table is recomputed on every add, delete and update of a server, so a server set to
    weight 0 keeps its slots (its last_weight is unchanged) but is unavailable.

    Lookup: slot = ``mh_hashkey(saddr, port, hash1, 0) % M``, port = the source port with
    "mh-port" (TCP/UDP/SCTP), else 0. The slot's server is returned unless unavailable (weight
    <= 0 or IP_VS_DEST_F_OVERLOAD). With "mh-fallback" the kernel then tries, for offset = 0..M-1,
    slot ``mh_hashkey(saddr, port, hash1, (offset + slot) % M) % M`` and returns the first
    available server.

    Since the keys are constants, the choice is a pure function of the client address (and
    port), the servers' addresses, ports, list order, weights, last_weights and overload
    flags: deterministic.
    """

    name = "mh"
    source = "net/netfilter/ipvs/ip_vs_mh.c"
    flags_supported = frozenset({"mh-fallback", "mh-port"})

    def __init__(
        self,
        dests: Sequence[Dest],
        *,
        flags: frozenset[str] = frozenset(),
        last_weights: Mapping[str, int] | None = None,
    ) -> None:
        """``last_weights`` (by dest name) overrides the default last_weight = weight.

        Use it for a service whose servers were set to weight 0 before the model was created.
        """
        super().__init__(dests, flags=flags)
        self.last_weight: dict[DestKey, int] = {}
        for d in self.dests:
            lw = d.weight
            if last_weights is not None and d.name in last_weights:
                lw = last_weights[d.name]
            self.last_weight[dest_key(d)] = lw
        self._slots = self._reassign()

    def update(self, dests: Sequence[Dest]) -> None:
        """Servers changed: last_weight keeps the latest non-zero weight of a kept server."""
        old = self.last_weight
        super().update(dests)
        self.last_weight = {}
        for d in self.dests:
            k = dest_key(d)
            self.last_weight[k] = d.weight if (k not in old or d.weight != 0) else old[k]
        self._slots = self._reassign()

    def gcd_rshift(self) -> tuple[int, int]:
        """(s->gcd, s->rshift) as ip_vs_mh_gcd_weight / ip_vs_mh_shift_weight compute them."""
        lws = [self.last_weight[dest_key(d)] for d in self.dests]
        g = 0
        for w in lws:
            if w > 0:
                g = math.gcd(w, g) if g > 0 else w
        if g < 1:
            return g, 0
        mw = max([0, *lws]) // g
        return g, max(0, mw.bit_length() - MH_TAB_BITS)

    def _reassign(self) -> list[int | None]:
        """Slot -> index into self.dests."""
        slots: list[int | None] = [None] * MH_TAB_SIZE
        g, rshift = self.gcd_rshift()
        if g < 1 or not self.dests:
            return slots
        perm: list[int] = []
        skip: list[int] = []
        turns: list[int] = []
        for d in self.dests:
            perm.append(mh_hashkey(d.addr, d.port, MH_HASH1) % MH_TAB_SIZE)
            skip.append(mh_hashkey(d.addr, d.port, MH_HASH2) % (MH_TAB_SIZE - 1) + 1)
            lw = self.last_weight[dest_key(d)]
            turns.append(((lw // g) >> rshift) or (1 if lw != 0 else 0))
        taken = [False] * MH_TAB_SIZE
        n = dt_count = 0
        while True:
            i = 0
            while i < len(self.dests):
                if turns[i] < 1:
                    i += 1
                    continue
                c = perm[i]
                while taken[c]:
                    perm[i] = (perm[i] + skip[i]) % MH_TAB_SIZE
                    c = perm[i]
                taken[c] = True
                slots[c] = i
                n += 1
                if n == MH_TAB_SIZE:
                    return slots
                dt_count += 1
                if dt_count >= turns[i]:
                    dt_count = 0
                    i += 1

    def table(self) -> list[str | None]:
        """Dest name per lookup slot (M = 4093 slots)."""
        return [None if i is None else self.dests[i].name for i in self._slots]

    def slot(self, flow: Flow) -> int:
        """The lookup slot of a flow (no fallback)."""
        port = self._flow_port(flow, "mh-port")
        return mh_hashkey(flow.saddr, port, MH_HASH1) % MH_TAB_SIZE

    def schedule(self, flow: Flow) -> Dest | None:
        port = self._flow_port(flow, "mh-port")
        ihash = mh_hashkey(flow.saddr, port, MH_HASH1) % MH_TAB_SIZE
        i = self._slots[ihash]
        if i is None:
            return None
        dest = self.dests[i]
        if is_available(dest):
            return dest
        if "mh-fallback" not in self.flags:
            return None
        for offset in range(MH_TAB_SIZE):
            roffset = (offset + ihash) % MH_TAB_SIZE
            i = self._slots[mh_hashkey(flow.saddr, port, MH_HASH1, roffset) % MH_TAB_SIZE]
            if i is None:
                break
            if is_available(self.dests[i]):
                return self.dests[i]
        return None


# ---------------------------------------------------------------------------------------------
# lblc, lblcr


LBLC_TAB_SIZE = 1 << 10  # CONFIG_IP_VS_LBLC_TAB_BITS / CONFIG_IP_VS_LBLCR_TAB_BITS default 10
LBLC_MAX_SIZE = LBLC_TAB_SIZE * 16  # tbl->max_size: 16384 entries


def lblc_overloaded(dest: Dest, dests: Sequence[Dest]) -> bool:
    """is_overloaded() of lblc and lblcr.

    True when ``activeconns > weight`` and some server of the service (any, the same one
    included, OVERLOAD flag not looked at) has ``activeconns * 2 < weight``.
    """
    if dest.active > dest.weight:
        return any(d.active * 2 < d.weight for d in dests)
    return False


class LblcModel(_KeyedModel):
    """Locality-based least-connection (net/netfilter/ipvs/ip_vs_lblc.c).

    State: a cache destination address -> real server (the kernel's hash table of
    ip_vs_lblc_entry, 1024 buckets), kept here as ``self.cache`` (daddr -> (addr, port)).

    Schedule for a packet to daddr:

    1. If daddr has an entry whose server is still in the service, has weight > 0 and is not
       ``is_overloaded`` (activeconns > weight while some server has activeconns * 2 < weight),
       that server is used. The IP_VS_DEST_F_OVERLOAD flag (upper threshold) is not checked on
       this path.
    2. Otherwise the weighted least-connection server is chosen (overhead = active * 256 +
       inactive, compared as overhead/weight by cross-multiplication, OVERLOAD-flagged and
       weight-0 servers skipped, ties to the first in list order); none -> no server. The entry
       is replaced by one for that server (ip_vs_lblc_new).

    The cache survives server removal (lblc has no add/del_dest callbacks): a removed server
    stays in the trash, referenced, and is used again if re-added before another server
    replaced the entry. Not modelled: time-based expiry — the periodic timer (every 60 s)
    drops entries idle for ``lblc_expiration`` (sysctl, default 24 h) every 30th run, and,
    while the table holds more than 16384 entries, entries idle for 6 min; tests must use
    fresh destination addresses or stay within those times. Modelled: the entries counter and
    the 16384 limit (no entry is created while ``entries > 16384``); ip_vs_lblc_new does not
    decrement the counter when it replaces an entry, so the kernel's counter grows by one per
    replacement and ``self.entries`` does the same.
    """

    name = "lblc"
    source = "net/netfilter/ipvs/ip_vs_lblc.c"

    def __init__(self, dests: Sequence[Dest], *, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(dests, flags=flags)
        self.cache: dict[str, DestKey] = {}
        self.entries = 0  # tbl->entries, as the kernel counts it

    def schedule(self, flow: Flow) -> Dest | None:
        daddr = str(ipaddress.ip_address(flow.daddr))
        cached = self._current(self.cache.get(daddr))
        if cached is not None and cached.weight > 0 and not lblc_overloaded(cached, self.dests):
            return cached
        dest = weighted_least(self.dests)
        if dest is None:
            return None
        # ip_vs_lblc_new()
        old = self.cache.get(daddr)
        if old == dest_key(dest):
            return dest
        if old is not None:
            del self.cache[daddr]  # ip_vs_lblc_del: entries not decremented
        if self.entries > LBLC_MAX_SIZE:
            return dest
        self.cache[daddr] = dest_key(dest)
        self.entries += 1
        return dest


class LblcrModel(_KeyedModel):
    """Locality-based least-connection with replication (net/netfilter/ipvs/ip_vs_lblcr.c).

    State: destination address -> server set (``self.sets``: daddr -> list of (addr, port),
    newest first as ip_vs_dest_set_insert adds with list_add_rcu at the head).

    Schedule for a packet to daddr:

    * No entry: the weighted least-connection server of the service (as lblc) is chosen and a
      set {it} is created (not while more than 16384 entries exist); none -> no server.
    * Entry: ``ip_vs_dest_set_min`` picks, in set order, the first member that is in the
      service, not OVERLOAD-flagged and of weight > 0, then any later available,
      non-OVERLOAD member with a strictly lower overhead/weight. If a member was found and is
      not ``is_overloaded`` (as lblc: activeconns > weight while some server of the service has
      activeconns * 2 < weight) it is used. Otherwise the weighted least-connection server of
      the whole service is chosen and added to the set (if not already there), so the set grows
      under load.

    Not modelled by the clock: when a set has more than one member and has not changed for
    ``lblcr_expiration`` (sysctl, default 24 h), the next packet for it removes the member with
    the highest overhead/weight (``ip_vs_dest_set_max``: first member with weight > 0, then
    later ones with weight > 0 and strictly higher overhead/weight), after the member to use was
    picked. ``mark_expired(daddr)`` makes the next schedule for daddr do that. Whole entries
    idle for ``lblcr_expiration`` (or 6 min while over 16384 entries) are dropped by the timer:
    not modelled.
    """

    name = "lblcr"
    source = "net/netfilter/ipvs/ip_vs_lblcr.c"

    def __init__(self, dests: Sequence[Dest], *, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(dests, flags=flags)
        self.sets: dict[str, list[DestKey]] = {}
        self._expired: set[str] = set()
        # last seen state of every server ever in the service: ip_vs_dest_set_max reads the
        # weight and counters of removed servers (in the trash) too
        self._known: dict[DestKey, Dest] = dict(self._by_key)

    def update(self, dests: Sequence[Dest]) -> None:
        super().update(dests)
        self._known.update(self._by_key)

    def mark_expired(self, daddr: str) -> None:
        """Pretend ``lblcr_expiration`` has passed since daddr's set last changed."""
        self._expired.add(str(ipaddress.ip_address(daddr)))

    def set_of(self, daddr: str) -> list[str]:
        """Names of the members of daddr's server set, in the kernel's set order."""
        members = self.sets.get(str(ipaddress.ip_address(daddr)), [])
        return [self._known[k].name for k in members]

    def _set_min(self, members: list[DestKey]) -> Dest | None:
        # a member no longer in the service is not IP_VS_DEST_F_AVAILABLE
        return weighted_least([self._by_key[k] for k in members if k in self._by_key])

    def _set_max(self, members: list[DestKey]) -> DestKey | None:
        most: Dest | None = None
        moh = 0
        for k in members:
            d = self._known[k]
            if most is None:
                if d.weight > 0:
                    most, moh = d, conn_overhead(d)
                continue
            doh = conn_overhead(d)
            if moh * d.weight < doh * most.weight and d.weight > 0:
                most, moh = d, doh
        return None if most is None else dest_key(most)

    def schedule(self, flow: Flow) -> Dest | None:
        daddr = str(ipaddress.ip_address(flow.daddr))
        members = self.sets.get(daddr)
        if members is not None:
            dest = self._set_min(members)
            if daddr in self._expired:
                self._expired.discard(daddr)
                if len(members) > 1:
                    m = self._set_max(members)
                    if m is not None:
                        members.remove(m)
            if dest is not None and not lblc_overloaded(dest, self.dests):
                return dest
            dest = weighted_least(self.dests)
            if dest is None:
                return None
            if dest_key(dest) not in members:
                members.insert(0, dest_key(dest))
            return dest
        self._expired.discard(daddr)
        dest = weighted_least(self.dests)
        if dest is None:
            return None
        if len(self.sets) <= LBLC_MAX_SIZE:
            self.sets[daddr] = [dest_key(dest)]
        return dest


HASH_MODELS: tuple[type[Model], ...] = (DhModel, ShModel, MhModel, LblcModel, LblcrModel)
