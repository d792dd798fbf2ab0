"""lvs-testbed: bring up an LVS cluster on real kernel IPVS and check it.

Commands:
  run    bring up the testbed, run the conformance suite, write results/<run-id>/
  test   unit tests on this machine, the conformance runs, guest life-cycle tests
  lab    bring up one forwarding mode and open the Mininet CLI
  bench  throughput, a connection-rate sweep and scale curves, VIP vs direct
  matrix the suite once per kernel, differences judged against the kernel ledger
  compare two runs as one bisection step (0 good, 1 bad, 125 cannot test), or more as a matrix
  clean  remove leftover namespaces, links, daemons and guests

When the running kernel has no IPVS, run, bench and lab re-execute themselves in a
virtme-ng guest booted from a Debian kernel that has it (testbed.cli._dispatch).
"""

from __future__ import annotations

import sys

from ..util import TestbedError
from ._commands import COMMANDS, TEST_RUNS
from ._dispatch import GUEST, Command, GuestRunner, dispatch, finish, install_signal_handlers
from ._parser import parse


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    install_signal_handlers()
    try:
        return dispatch(COMMANDS[args.command], args, argv)
    except TestbedError as exc:
        print(f"lvs-testbed: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("lvs-testbed: interrupted; cleaned up", file=sys.stderr, flush=True)
        return 130


__all__ = ["COMMANDS", "GUEST", "TEST_RUNS", "Command", "GuestRunner", "dispatch", "finish",
           "main", "parse"]  # fmt: skip
