"""Health checkers behind one interface: keepalived's checkers and ldirectord.

A checker owns the active director's IPVS table for a ``with`` block and
keeps only the healthy real servers in it::

    checks = KeepalivedChecks(checker="HTTP_GET", delay_loop=1)   # or Ldirectord(...)
    with checks.serve(cluster):
        cluster.stop_real_server("r1")      # removed within checks.removal_bound()
"""

from ._checker import Checker, checker_owns_table
from ._keepalived_checks import CHECKERS, KeepalivedChecks
from ._ldirectord import CHECKTYPES, Ldirectord

__all__ = [
    "CHECKERS",
    "CHECKTYPES",
    "Checker",
    "KeepalivedChecks",
    "Ldirectord",
    "checker_owns_table",
]
