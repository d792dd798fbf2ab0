"""Feature probes of the running kernel (modules, /proc files), for choices and skips.

>>> from testbed.kernel import missing_module
>>> missing_module("ip_vs_twos", needed_by="scheduler twos")   # on Debian's 6.1
'kernel lacks module ip_vs_twos (needed by scheduler twos)'
"""

from ._ledger import LEDGER, LedgerEntry, Probe, load_ledger, probe_features
from ._log import KernelLog, KernelRecord, bug_reports, parse_record
from ._probe import (
    PROC_IPVS,
    missing_module,
    missing_sysctl,
    modprobe,
    require_modules,
    running_kernel_has_ipvs,
)

__all__ = [
    "LEDGER",
    "PROC_IPVS",
    "KernelLog",
    "KernelRecord",
    "LedgerEntry",
    "Probe",
    "bug_reports",
    "load_ledger",
    "missing_module",
    "missing_sysctl",
    "modprobe",
    "parse_record",
    "probe_features",
    "require_modules",
    "running_kernel_has_ipvs",
]
