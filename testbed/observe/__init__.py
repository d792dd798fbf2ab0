"""What the suite measures: experiments on a running cluster, and their typed results.

Each experiment drives real traffic or real daemons and returns a typed
value; the conformance tests assert on it, and ``record()``-ed results reach
results.json and the report as the same dataclasses::

    ex = send_exchange(cluster, combinations()[0])       # Exchange; records a ForwardingRecord
    run = run_sync(ha)                                   # SyncRun
    fo = observe_failover(pair, "kill")                  # Failover; records a FailoverRecord
"""

from ._decisions import Comparison, Decision, Harness, compare, spread_over
from ._exchange import (
    ROUNDS,
    Exchange,
    capture_points,
    request_sequence,
    send_exchange,
    site_of,
    unservable,
)
from ._failover import Advert, Failover, observe_failover
from ._ftp import FTP_WAYS, FtpRecord, FtpWay, ftp_download
from ._health import SLACK, kernel_weights, load_feedback, removal_and_return, served_by, time_until
from ._icmp import Injection, InjectionRecord, inject
from ._persistence import (
    PersistenceRecord,
    QuiescentRecord,
    TemplateView,
    persistence_lifetime,
    quiescent_template,
)
from ._ports import fresh_client_port
from ._records import (
    RECORD_KINDS,
    FailoverRecord,
    FeedbackRecord,
    ForwardingRecord,
    HealthRecord,
    ScaleRecord,
    SchedulerRecord,
    ThresholdRecord,
    TraceHop,
    from_json,
    load_records,
    of_kind,
    record,
    record_kind,
    record_timings,
    recorded,
    recorded_timings,
    to_json,
)
from ._reuse import (
    REUSE_CLOSINGS,
    DeletedUnderFlowRecord,
    ReuseRecord,
    deleted_under_flow,
    port_reuse,
    sysctls,
)
from ._scale import active_per_server, hold_through_vip
from ._sync import SyncRun, longest_silence, run_sync, throughput_timeline
from ._sync_entries import SyncEntryRecord, sync_daemons, synced_entry
from ._tcp_states import (
    CLOSINGS,
    IdleRecord,
    TcpWalkRecord,
    WalkStep,
    idle_past_timeout,
    tcp_state_walk,
)
from ._udp import (
    UDP_TIMEOUT,
    OnePacketRecord,
    UdpEntryRecord,
    one_packet_schedule,
    udp_entry_lifetime,
)

__all__ = [
    "CLOSINGS",
    "FTP_WAYS",
    "RECORD_KINDS",
    "REUSE_CLOSINGS",
    "ROUNDS",
    "SLACK",
    "UDP_TIMEOUT",
    "Advert",
    "Comparison",
    "Decision",
    "DeletedUnderFlowRecord",
    "Exchange",
    "Failover",
    "FailoverRecord",
    "FeedbackRecord",
    "ForwardingRecord",
    "FtpRecord",
    "FtpWay",
    "Harness",
    "HealthRecord",
    "IdleRecord",
    "Injection",
    "InjectionRecord",
    "OnePacketRecord",
    "PersistenceRecord",
    "QuiescentRecord",
    "ReuseRecord",
    "ScaleRecord",
    "SchedulerRecord",
    "SyncEntryRecord",
    "SyncRun",
    "TcpWalkRecord",
    "TemplateView",
    "ThresholdRecord",
    "TraceHop",
    "UdpEntryRecord",
    "WalkStep",
    "active_per_server",
    "capture_points",
    "compare",
    "deleted_under_flow",
    "fresh_client_port",
    "from_json",
    "ftp_download",
    "hold_through_vip",
    "idle_past_timeout",
    "inject",
    "kernel_weights",
    "load_feedback",
    "load_records",
    "longest_silence",
    "observe_failover",
    "of_kind",
    "one_packet_schedule",
    "persistence_lifetime",
    "port_reuse",
    "quiescent_template",
    "record",
    "record_kind",
    "record_timings",
    "recorded",
    "recorded_timings",
    "removal_and_return",
    "request_sequence",
    "run_sync",
    "send_exchange",
    "served_by",
    "site_of",
    "spread_over",
    "sync_daemons",
    "synced_entry",
    "sysctls",
    "tcp_state_walk",
    "throughput_timeline",
    "time_until",
    "to_json",
    "udp_entry_lifetime",
    "unservable",
]
