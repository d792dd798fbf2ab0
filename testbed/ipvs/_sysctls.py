"""Every net.ipv4.vs sysctl the suite knows: its default in a fresh namespace, the writes
the kernel must refuse (the bounded ones) or take, and what makes it exist.

Declared from net/netfilter/ipvs/ip_vs_ctl.c (vs_vars[], ip_vs_control_net_init_sysctl,
proc_do_defense_mode, proc_do_sync_threshold, proc_do_sync_ports), ip_vs_lblc.c,
ip_vs_lblcr.c and Documentation/networking/ipvs-sysctl.rst. A sysctl a kernel has that
is not declared here is reported as unknown: new kernels add some, and the suite
should say so rather than pass over them::

    >>> SYSCTLS["sync_ports"].rejects
    ('0', '3', '-1')
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry

SYSCTL_DIR = "/proc/sys/net/ipv4/vs"


@dataclass(frozen=True, kw_only=True)
class Sysctl:
    name: str
    default: str | None  # as /proc shows it in a new namespace (None: machine-dependent)
    rejects: tuple[str, ...] = ()  # writes the kernel refuses (EINVAL)
    accepts: tuple[str, ...] = ()  # writes it takes and reads back as written
    probes: tuple[str, ...] = ()  # writes whose fate is only recorded (plain integers)
    # what must be present for it to exist: a module, or the kernel change that added it
    # (None: every kernel the suite knows has it, and its absence is a failure)
    exists_with: str | None = None
    module: str | None = None  # a module that registers it when loaded


SYSCTLS: Registry[Sysctl] = Registry("IPVS sysctl")

_PLAIN = ("-1", "2", "100")  # proc_dointvec: no bounds; what happens is recorded
_DEFENSE = {"rejects": ("-1", "4"), "accepts": ("3", "1", "0")}  # proc_do_defense_mode 0..3

for _sysctl in (
    Sysctl(name="amemthresh", default="1024", accepts=("2048",), probes=("-1", "0")),
    Sysctl(name="am_droprate", default="10", accepts=("20",), probes=("-1", "0")),
    Sysctl(name="drop_entry", default="0", **_DEFENSE),
    Sysctl(name="drop_packet", default="0", **_DEFENSE),
    Sysctl(name="secure_tcp", default="0", **_DEFENSE),
    Sysctl(name="conntrack", default="0", accepts=("1", "0"), probes=_PLAIN,
           exists_with="CONFIG_IP_VS_NFCT"),
    Sysctl(name="snat_reroute", default="1", accepts=("0",), probes=_PLAIN),
    Sysctl(name="sync_version", default="1", rejects=("2", "-1"), accepts=("0", "1")),
    Sysctl(name="sync_ports", default="1", rejects=("0", "3", "-1"), accepts=("2", "8", "1")),
    Sysctl(name="sync_persist_mode", default="0", accepts=("1",), probes=_PLAIN),
    Sysctl(name="sync_qlen_max", default=None, accepts=("4096",), probes=("-1", "0")),
    Sysctl(name="sync_sock_size", default="0", accepts=("65536",), probes=("-1",)),
    Sysctl(name="cache_bypass", default="0", accepts=("1",), probes=_PLAIN),
    Sysctl(name="expire_nodest_conn", default="0", accepts=("1",), probes=_PLAIN),
    Sysctl(name="sloppy_tcp", default="0", accepts=("1",), probes=_PLAIN),
    Sysctl(name="sloppy_sctp", default="0", accepts=("1",), probes=_PLAIN),
    Sysctl(name="expire_quiescent_template", default="0", accepts=("1",), probes=_PLAIN),
    # two integers: threshold < period, unless the period is 0 (threshold alone)
    Sysctl(name="sync_threshold", default="3 50", rejects=("50 3", "-1 50", "5 5"),
           accepts=("10 100", "7 0")),
    Sysctl(name="sync_refresh_period", default="0", accepts=("10",), probes=("-1",)),
    Sysctl(name="sync_retries", default="0", rejects=("4", "-1"), accepts=("3", "0")),
    Sysctl(name="nat_icmp_send", default="0", accepts=("1",), probes=_PLAIN),
    Sysctl(name="pmtu_disc", default="1", accepts=("0",), probes=_PLAIN),
    Sysctl(name="backup_only", default="0", accepts=("1",), probes=_PLAIN),
    Sysctl(name="conn_reuse_mode", default="1", accepts=("0", "3"), probes=_PLAIN),
    Sysctl(name="schedule_icmp", default="0", accepts=("1",), probes=_PLAIN),
    Sysctl(name="ignore_tunneled", default="0", accepts=("1",), probes=_PLAIN),
    Sysctl(name="run_estimation", default="1", accepts=("0", "1"), probes=_PLAIN,
           exists_with="ipvs: add sysctl_run_estimation (Linux 5.18)"),
    # estimator kthreads (Linux 6.2, "ipvs: use kthreads for stats estimation")
    Sysctl(name="est_cpulist", default=None, rejects=("x",),
           exists_with="ipvs: use kthreads for stats estimation (Linux 6.2)"),
    Sysctl(name="est_nice", default="0", rejects=("20", "-21"), accepts=("19", "-20", "0"),
           exists_with="ipvs: use kthreads for stats estimation (Linux 6.2)"),
    # resizable per-namespace tables (Linux 7.1, "ipvs: add conn_lfactor and svc_lfactor").
    # Not the documented -4, which is init_net's: a namespace's own starts at -1, one
    # lower since NAT entries are hashed twice (ip_vs_conn.c
    # ip_vs_conn_default_load_factor); measured -2 on Debian's 7.2.13
    Sysctl(name="conn_lfactor", default="-2", rejects=("-9", "9"), accepts=("-8", "8", "-4"),
           exists_with="ipvs: add conn_lfactor and svc_lfactor sysctl vars (Linux 7.1)"),
    # a cap on a namespace's connection entries, 2^30 on 64-bit, a new namespace taking
    # init_net's; proc_do_conn_max refuses values outside 0..2^30 (EINVAL)
    Sysctl(name="conn_max", default="1073741824", rejects=("-1", "1073741825"),
           accepts=("0", "100000", "1073741824"),
           exists_with="ipvs: add conn_max sysctl to limit connections (4a15044a2b06)"),
    Sysctl(name="svc_lfactor", default=None,
           exists_with="ipvs: add conn_lfactor and svc_lfactor sysctl vars (Linux 7.1)"),
    Sysctl(name="debug_level", default="0", exists_with="CONFIG_IP_VS_DEBUG"),
    # proc_dointvec_jiffies: 24 hours, shown in seconds
    Sysctl(name="lblc_expiration", default="86400", accepts=("60",), module="ip_vs_lblc"),
    Sysctl(name="lblcr_expiration", default="86400", accepts=("60",), module="ip_vs_lblcr"),
):  # fmt: skip
    SYSCTLS.register(_sysctl)
