"""Typed observations: what the suite measured, as values both the tests and the report read.

Each kind of observation is a frozen dataclass registered under a kind name.
``record()`` keeps one for the run's results.json; ``load_records()`` turns
results.json back into the same dataclasses, so a renamed or missing field
fails loudly where it is read instead of silently dropping a mark from a plot.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

R = TypeVar("R")
RECORD_KINDS: dict[str, type] = {}
_RECORDED: dict[tuple[str, str], Any] = {}
_TIMINGS: dict[str, float] = {}


def record_kind(kind: str) -> Callable[[type[R]], type[R]]:
    """Register a dataclass as an observation kind (it must have a ``key`` field)."""

    def register(cls: type[R]) -> type[R]:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if "key" not in names:
            raise TypeError(f"{cls.__name__} needs a 'key' field")
        if kind in RECORD_KINDS:
            raise TypeError(f"observation kind {kind!r} registered twice")
        cls.kind = kind  # type: ignore[attr-defined]
        RECORD_KINDS[kind] = cls
        return cls

    return register


def record(obs: Any) -> Any:
    """Keep an observation for results.json (the latest one per kind and key)."""
    _RECORDED[obs.kind, obs.key] = obs
    return obs


def recorded() -> list[Any]:
    """Every observation recorded in this process, in recording order."""
    return list(_RECORDED.values())


def record_timings(timings: dict[str, float]) -> None:
    _TIMINGS.update(timings)


def recorded_timings() -> dict[str, float]:
    return dict(_TIMINGS)


def to_json(obs: Any) -> dict[str, Any]:
    return {"kind": obs.kind, **dataclasses.asdict(obs)}


def _convert(hint: Any, value: Any) -> Any:
    """JSON value -> the annotated type: nested dataclasses, lists and tuples of them."""
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_json(hint, value)  # type: ignore[arg-type]
    if origin in (list, tuple) and isinstance(value, list):
        args = get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return tuple(_convert(a, v) for a, v in zip(args, value, strict=True))
        item = args[0] if args else Any
        converted = [_convert(item, v) for v in value]
        return tuple(converted) if origin is tuple else converted
    if origin in (typing.Union, types.UnionType):
        for arg in get_args(hint):
            if arg is not type(None) and value is not None:
                return _convert(arg, value)
    return value


def from_json(cls: type[R], data: dict[str, Any]) -> R:
    """The dataclass ``cls`` from its JSON fields; TypeError on unknown or missing ones."""
    hints = get_type_hints(cls)
    fields = {k: v for k, v in data.items() if k != "kind"}
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(fields) - names
    if unknown:
        raise TypeError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    return cls(**{k: _convert(hints[k], v) for k, v in fields.items()})


def load_records(data: dict[str, Any]) -> list[Any]:
    """The observations of a results.json, as their dataclasses (kinds unknown here skipped)."""
    items = data.get("observations", [])
    if not isinstance(items, list):  # results.json written before observations were typed
        return []
    return [from_json(RECORD_KINDS[i["kind"]], i) for i in items if i.get("kind") in RECORD_KINDS]


def of_kind(records: Iterable[Any], cls: type[R]) -> list[R]:
    return [r for r in records if isinstance(r, cls)]


# -- the kinds -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TraceHop:
    """One frame of a traced connection at one interface."""

    point: str
    direction: str
    packet: str


@record_kind("forwarding")
@dataclass(frozen=True, kw_only=True)
class ForwardingRecord:
    """One forwarding exchange: requests through the VIP, captured at every hop."""

    key: str  # the combination, "nat-tcp-ipv4-offload"
    mode: str
    protocol: str
    family: str
    requests: int
    responses_per_server: dict[str, int]
    kernel_order: list[str]  # real-server addresses in the kernel's list order
    service_counters: dict[str, int]
    frames_captured: int
    exchange_s: float
    handshake_trace: list[TraceHop] = field(default_factory=list)
    checksums: str = "offload"  # who computed transport checksums (registry CHECKSUMS)


@record_kind("scheduler")
@dataclass(frozen=True, kw_only=True)
class SchedulerRecord:
    """A scheduler's choices against its reference model."""

    key: str  # "wrr[4, 3, 2]"
    flows: int
    observed: dict[str, int]  # real server -> connections the kernel gave it
    expected: dict[str, float]  # what the model predicts (a count, or a summed probability)
    check: str  # how they were compared
    mismatches: int | None = None  # choices that differ (None: compared as distributions)
    figures: dict[str, Any] = field(default_factory=dict)  # case parameters and measures


@record_kind("thresholds")
@dataclass(frozen=True, kw_only=True)
class ThresholdRecord:
    """Connections per real server around an upper threshold and its hysteresis."""

    key: str
    first: dict[str, int]
    stages: list[dict[str, int]]


@record_kind("failover")
@dataclass(frozen=True, kw_only=True)
class FailoverRecord:
    """One failover's timeline, in seconds after the fault."""

    key: str  # "<backend>-<fault>"
    backend: str
    fault: str
    formula: str
    window_s: tuple[float, float]  # the rule's window, on the fault's clock
    takeover_s: float
    daemon_reported_s: float | None
    decided_s: float | None  # the daemon's logged decision, where scripts follow it
    released_s: float | None
    lower_prio_adverts_s: list[float]
    backup_transitions: list[tuple[float, str]]
    service_restored_s: float | None
    last_via_master_s: float | None
    first_via_backup_s: float | None
    garp_s: list[float]
    failed_probes: int
    failback_s: float
    vip_holders_after: list[str]


@record_kind("health")
@dataclass(frozen=True, kw_only=True)
class HealthRecord:
    """How fast a checker removed a failed real server and took it back."""

    key: str  # the checker's name
    removed_s: float
    bound_s: float
    restored_s: float
    during: dict[str, int]  # requests per real server while it was down
    after: dict[str, int]


@record_kind("feedback")
@dataclass(frozen=True, kw_only=True)
class FeedbackRecord:
    """Load feedback: a loaded real server's weight, and where new connections went."""

    key: str
    load: int
    weight_before: int
    weight_loaded: int
    lowered_s: float
    raised_s: float
    new_connections: dict[str, int]
    agent_port: int


@record_kind("scale")
@dataclass(frozen=True, kw_only=True)
class ScaleRecord:
    """Many simultaneous connections: the director's counts and the holders' report."""

    key: str  # the mode
    connections: int
    ipvs_active: list[int]  # ActiveConn per real server with everything open
    ramped: dict[str, Any]  # loadgen.holder's "ramped" report (its JSON)
    result: dict[str, Any]  # loadgen.holder's "result" report
