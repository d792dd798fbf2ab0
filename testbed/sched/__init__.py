"""Reference models of the kernel IPVS schedulers (pure Python, no root needed).

One class per scheduler, each following one file of net/netfilter/ipvs/::

    from testbed.sched import MODELS, Dest, Flow

    dests = [Dest(name="r3", addr="198.51.100.13", weight=2), ...]   # kernel list order
    model = MODELS["wrr"](dests)
    model.schedule(Flow(saddr="203.0.113.11", sport=40000, daddr=vip, dport=80))
"""

from ._base import Dest, Flow, Model
from ._hash import HASH_MODELS, disruption, slot_shares
from ._simple import MODELS as _COUNTER_MODELS
from ._simple import overloaded_after

MODELS: dict[str, type[Model]] = {**_COUNTER_MODELS, **{m.name: m for m in HASH_MODELS}}

__all__ = ["MODELS", "Dest", "Flow", "Model", "disruption", "overloaded_after", "slot_shares"]
