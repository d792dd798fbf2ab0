"""Reference models of the kernel IPVS schedulers (pure Python, no root needed).

One class per scheduler, each following one file of net/netfilter/ipvs/::

    from testbed.sched import MODELS, Dest, Flow

    dests = [Dest(name="r3", addr="198.51.100.13", weight=2), ...]   # kernel list order
    model = MODELS["wrr"](dests)
    model.schedule(Flow(saddr="203.0.113.11", sport=40000, daddr=vip, dport=80))
"""

from ._base import (
    Dest,
    Flow,
    Model,
    conn_overhead,
    dest_key,
    is_available,
    list_order,
    total_conns,
    weighted_least,
)
from ._counters import MODELS as _COUNTER_MODELS
from ._counters import apply_overload, overloaded_after
from ._hashing import HASH_MODELS, addr_fold, disruption, hash_32, slot_shares

MODELS: dict[str, type[Model]] = {**_COUNTER_MODELS, **{m.name: m for m in HASH_MODELS}}

__all__ = [
    "MODELS",
    "Dest",
    "Flow",
    "Model",
    "addr_fold",
    "apply_overload",
    "conn_overhead",
    "dest_key",
    "disruption",
    "hash_32",
    "is_available",
    "list_order",
    "overloaded_after",
    "slot_shares",
    "total_conns",
    "weighted_least",
]
