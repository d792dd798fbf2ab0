"""Reference models of the kernel IPVS schedulers (pure Python, no root needed).

One class per scheduler, each following one file of net/netfilter/ipvs/::

    from testbed.sched import MODELS, Dest, Flow

    dests = [Dest(name="r3", addr="198.51.100.13", weight=2), ...]   # kernel list order
    model = MODELS["wrr"](dests)
    model.schedule(Flow(saddr="203.0.113.11", sport=40000, daddr=vip, dport=80))
"""

from collections.abc import Iterable, Sequence

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


def as_built(scheduler: str, dests: Sequence[Dest], flags: Iterable[str] = ()) -> Model:
    """The model in the state the kernel's is in after a service was built empty and its
    real servers added one by one (``dests`` in the kernel's list order: the last added
    first). Each add calls the scheduler's hook, and wrr's ip_vs_wrr_dest_changed keeps
    cw from the previous step, so the model replays the same adds."""
    model = MODELS[scheduler]([], flags=frozenset(flags))
    for added in range(1, len(dests) + 1):
        model.update(dests[-added:])
    return model


__all__ = [
    "MODELS",
    "Dest",
    "Flow",
    "Model",
    "addr_fold",
    "apply_overload",
    "as_built",
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
