"""The vocabulary of LVS, one declaration per entry: modes, protocols, families, tunnels.

Everything that differs between two forwarding modes (or protocols, address
families, tunnel types, schedulers) is an attribute or a small hook of one
entry here; the rest of the testbed reads entries and never branches on a
name. Adding a mode is registering one more ``Mode``::

    >>> from testbed.registry import MODES, PROTOCOLS, combinations
    >>> MODES["dr"].reply_via_director
    False
    >>> [c.id for c in combinations("full")]
    ['nat-tcp-ipv4', 'dr-tcp-ipv4', 'tun-tcp-ipv4']
    >>> MODES["snat"]  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...UnknownEntry: unknown forwarding mode 'snat' (choose from nat, dr, tun)
"""

from ._checksums import CHECKSUMS, COMPUTED, OFFLOAD, Checksums
from ._combination import POLICIES, Combination, combinations, pairwise
from ._engine import PERSISTENCE_ENGINES, PersistenceEngine
from ._family import FAMILIES, Address, Family, Network, family_of, parse_address, parse_network
from ._gue import GUE, GUE_FLAG_PRIV
from ._host import DirectorHost, RealServerHost
from ._mode import MODES, Mode, neutral_baseline
from ._profile import Profile, load_profiles
from ._protocol import PROTOCOLS, Protocol, innermost_header
from ._registry import Registry, UnknownEntry
from ._scheduler import SCHED_FLAGS, SCHEDULERS, Scheduler
from ._tunnel import (
    TUNNEL_CHECKSUMS,
    TUNNELS,
    Encapsulation,
    Receiver,
    Tunnel,
    TunnelChecksum,
    TunnelOption,
    tunnel_options,
)

__all__ = [
    "CHECKSUMS",
    "COMPUTED",
    "FAMILIES",
    "GUE",
    "GUE_FLAG_PRIV",
    "MODES",
    "OFFLOAD",
    "PERSISTENCE_ENGINES",
    "POLICIES",
    "PROTOCOLS",
    "SCHEDULERS",
    "SCHED_FLAGS",
    "TUNNELS",
    "TUNNEL_CHECKSUMS",
    "Address",
    "Checksums",
    "Combination",
    "DirectorHost",
    "Encapsulation",
    "Family",
    "Mode",
    "Network",
    "PersistenceEngine",
    "Profile",
    "Protocol",
    "RealServerHost",
    "Receiver",
    "Registry",
    "Scheduler",
    "Tunnel",
    "TunnelChecksum",
    "TunnelOption",
    "UnknownEntry",
    "combinations",
    "family_of",
    "innermost_header",
    "load_profiles",
    "neutral_baseline",
    "pairwise",
    "parse_address",
    "parse_network",
    "tunnel_options",
]
