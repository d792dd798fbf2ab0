"""The command line: every command and option, declared in one place."""

from __future__ import annotations

import argparse

from ..ha import FAULTS
from ..registry import POLICIES
from ..util import REPO

DESCRIPTION = "bring up an LVS cluster on real kernel IPVS and check it"
# options naming a path on the host: made absolute before a guest sees them (its
# working directory is the checkout)
PATH_OPTIONS = ("results", "topology")


def _cpus(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a guest needs a whole number of CPUs, 1 or more: {text}")
    return int(text)


def _guest_options(sp: argparse.ArgumentParser, *, many: bool = False) -> None:
    what = (
        "guest kernel: vmlinuz path, built kernel tree, installed version, Debian "
        "release (trixie, sid) / version (6.12, 7) to download, or pinned:RELEASE as "
        "conformance/kernel-pins.toml records it (default: installed linux-image-amd64)"
    )
    if many:  # each kernel in turn, then their figures side by side
        sp.add_argument("--kernel", dest="kernels", action="append", help=what + "; repeatable")
    else:
        sp.add_argument("--kernel", help=what)
    sp.add_argument("--emulation", choices=["auto", "kvm", "tcg"], default="auto")
    sp.add_argument("--memory", default="4G", help="guest memory (default 4G)")
    sp.add_argument("--cpus", type=_cpus, help="guest CPUs (default 2)")
    sp.add_argument(
        "--console", action="store_true",
        help="show the guest kernel's console (boot messages, an oops or panic), which "
        "goes nowhere otherwise",
    )  # fmt: skip
    sp.add_argument(
        "--topology", help="cluster .toml or .py, or a name in topologies/ (default: default)"
    )


def _suite_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--mode", help="forwarding modes for the mode-parametrized tests (nat,dr)")
    sp.add_argument("--protocol", help="protocols for the protocol-parametrized tests")
    sp.add_argument("--family", help="address families for the family-parametrized tests")
    sp.add_argument("--checksums", help="checksum handling: offload, computed (comma-separated)")
    sp.add_argument(
        "--combinations", choices=POLICIES, default="pairwise",
        help="mode x protocol x family x checksums: every pair covered (default), or the "
        "full product",
    )  # fmt: skip
    sp.add_argument(
        "--profile", default="full",
        help="which tests at which sizes: full (default) or a profile in "
        "conformance/profiles.toml (smoke: every capability once)",
    )  # fmt: skip


def _results_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--results", default=str(REPO / "results"), help="results directory")
    sp.add_argument("--run-id", help=argparse.SUPPRESS)
    sp.add_argument("--commit", help=argparse.SUPPRESS)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lvs-testbed", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="bring up, run the conformance suite, write results")
    _guest_options(run)
    _suite_options(run)
    run.add_argument("-k", dest="keyword", help="pytest -k expression to select tests")
    run.add_argument(
        "--ktap", action="store_true",
        help="end with the results as KTAP version 1 on stdout (for kernel CI; "
        "also in the run's results.ktap)",
    )  # fmt: skip
    run.add_argument(
        "--pyprofile",
        action="store_true",
        help="profile the suite's own Python (wall time) into the run's pyprofile.pstats",
    )
    _results_options(run)

    test = sub.add_parser(  # no abbreviations: test's own options are taken off for `run`
        "test", help="unit tests here, then the conformance runs, then guest life-cycle tests",
        allow_abbrev=False,
    )  # fmt: skip
    _guest_options(test)
    _suite_options(test)
    _results_options(test)
    test.add_argument(
        "--smoke-kernel", dest="smoke_kernels", action="append", metavar="KERNEL",
        help="after the full run, the smoke profile on this kernel too, then the kernel "
        "matrix (repeatable; default: pinned:trixie and pinned:sid; none: no matrix)",
    )  # fmt: skip
    test.add_argument("--runs", help=argparse.SUPPRESS)  # in the guest: these run lines

    lab = sub.add_parser(
        "lab", help="a teaching lab with its checker (lab list), or a working cluster to explore"
    )
    _guest_options(lab)
    lab.add_argument(
        "mode", metavar="NAME",
        help="list (the labs), a lab's name, or a forwarding mode (nat, dr, tun: a working "
        "cluster in the Mininet CLI)",
    )  # fmt: skip
    lab.add_argument("--scheduler", default="rr", help="IPVS scheduler of a mode (default rr)")
    how = lab.add_mutually_exclusive_group()
    how.add_argument(
        "--check", action="store_true",
        help="no CLI: start the lab, run its checker, exit 0 if every task passes",
    )  # fmt: skip
    how.add_argument(
        "--solution", action="store_true",
        help="print the lab's reference solution (for teachers) and exit",
    )  # fmt: skip
    lab.add_argument(
        "--apply", metavar="WHAT",
        help="with --check: first apply 'solution' or a wrong solution 'wrong-N'",
    )  # fmt: skip

    bench = sub.add_parser(
        "bench",
        help="throughput, a connection-rate sweep and scale curves (0..200k held), VIP vs "
        "direct; several --kernel side by side",
    )
    _guest_options(bench, many=True)
    bench.add_argument("--repetitions", type=int, default=5, help="per figure (default 5)")
    bench.add_argument(
        "--scale-levels", metavar="N,N,...",
        help="connections held at each point of the scale curve (default "
        "0,10000,25000,50000,100000,200000)",
    )  # fmt: skip
    bench.add_argument(
        "--connections", type=int,
        help="the scale curve's top level: the default levels up to N, then N",
    )  # fmt: skip
    bench.add_argument("--hold", type=float, default=60.0,
                       help="seconds to hold at the top level (default 60)")  # fmt: skip
    bench.add_argument(
        "--sweep", metavar="C,C,...", default="1,4,16,64",
        help="offered concurrencies of the connection-rate client (default 1,4,16,64)",
    )  # fmt: skip
    bench.add_argument(
        "--conn-tab-bits", type=int,
        help="boot the guest with ip_vs.conn_tab_bits=N (the connection table's size, 2^N)",
    )  # fmt: skip
    bench.add_argument("--mode", help="modes for throughput and rate (default: all)")
    bench.add_argument(
        "--scale-mode",
        help="paths of the scale curve: direct and modes (default: direct, then one mode "
        "per state table)",
    )
    bench.add_argument("--iperf-seconds", type=float, default=5.0, help="per iperf3 run")
    bench.add_argument("--rate-connections", type=int, default=2000,
                       help="connections per connection-rate measurement")  # fmt: skip
    bench.add_argument("--connect-tool", default="native",
                       help="connection-rate client: native (compiled lvs-connrate, "
                            "default) or python (loadgen.holder)")  # fmt: skip
    bench.add_argument("--failover-streams", type=int, default=60,
                       help="streams through a director failure (0: skip)")  # fmt: skip
    bench.add_argument("--failover-fault", default="kill",
                       help=f"how the master fails: {', '.join(FAULTS)} (kill: its "
                            "keepalived SIGKILLed)")  # fmt: skip
    _results_options(bench)

    matrix = sub.add_parser(
        "matrix", help="the suite once per kernel, then the differences against the ledger"
    )
    matrix.add_argument(
        "--kernel", dest="kernels", action="append", required=True, metavar="KERNEL",
        help="a kernel as `run --kernel` takes it; give two or more",
    )  # fmt: skip
    matrix.add_argument("--emulation", choices=["auto", "kvm", "tcg"], default="auto")
    matrix.add_argument("--memory", default="4G", help="guest memory (default 4G)")
    matrix.add_argument("--topology", help="cluster .toml or .py, or a name in topologies/")
    _suite_options(matrix)
    matrix.add_argument("-k", dest="keyword", help="pytest -k expression to select tests")
    _results_options(matrix)

    compare = sub.add_parser(
        "compare",
        help="two runs: one bisection step (exit 0 good, 1 bad, 125 cannot test); "
        "more: a kernel matrix of runs made anywhere; bench runs: side by side",
    )
    compare.add_argument(
        "runs", nargs="+", metavar="RUN",
        help="a results.json, a run directory, or a results directory (its newest run); "
        "with two, the known-good run first",
    )  # fmt: skip
    compare.add_argument(
        "--out", help="write a matrix of the runs here (comparison.json, matrix.txt, "
        "matrix.html) instead of judging a bisection step",
    )  # fmt: skip
    _results_options(compare)

    pin = sub.add_parser(
        "pin", help="record a Debian release's newest kernel (versions, sha256) for "
        "--kernel pinned:RELEASE (what CI boots)",
    )  # fmt: skip
    pin.add_argument("releases", nargs="+", metavar="RELEASE", help="trixie, sid, ...")

    sub.add_parser("clean", help="remove leftover namespaces, links, daemons and guests")
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    args = parser().parse_args(argv)
    args.argv = list(argv)
    if args.command == "bench":  # one kernel is an ordinary guest run
        args.kernel = args.kernels[0] if args.kernels and len(args.kernels) == 1 else None
    return args
