"""lvs-testbed: bring up an LVS cluster on real kernel IPVS and check it.

Commands:
  run    bring up the testbed, run the conformance suite, write results/<run-id>/
  test   unit tests on this machine, then `run`
  lab    bring up one forwarding mode and open the Mininet CLI
  bench  throughput, connection rate and 100k held connections, VIP vs direct
  clean  remove leftover namespaces, links, daemons and guests

When the running kernel has no IPVS, run, bench and lab re-execute themselves in a
virtme-ng guest booted from a Debian kernel that has it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ._errors import TestbedError
from ._spec import MODES, load_topology

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"


def _say(msg: str) -> None:
    print(f"[lvs-testbed] {msg}", flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lvs-testbed", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def guest_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--kernel",
            help="guest kernel: vmlinuz path, installed version, or Debian release "
            "(trixie, sid) / version (6.12, 7) to download (default: installed linux-image-amd64)",
        )
        sp.add_argument("--emulation", choices=["auto", "kvm", "tcg"], default="auto")
        sp.add_argument("--memory", default="4G", help="guest memory (default 4G)")
        sp.add_argument("--topology", help="cluster TOML (default topologies/default.toml)")

    run = sub.add_parser("run", help="bring up, run the conformance suite, write results")
    guest_options(run)
    run.add_argument("--mode", help="comma-separated forwarding modes (default: all)")
    run.add_argument("-k", dest="keyword", help="pytest -k expression to select tests")
    run.add_argument("--results", default=str(REPO / "results"), help="results directory")
    run.add_argument("--run-id", help=argparse.SUPPRESS)

    test = sub.add_parser("test", help="unit tests here, then the conformance run")
    guest_options(test)
    test.add_argument("--results", default=str(REPO / "results"), help="results directory")

    lab = sub.add_parser("lab", help="bring up a forwarding mode and open the Mininet CLI")
    guest_options(lab)
    lab.add_argument("mode", help="nat, dr or tun")
    lab.add_argument("--scheduler", default="rr", help="IPVS scheduler (default rr)")

    bench = sub.add_parser(
        "bench", help="throughput, connection rate and 100k held connections, VIP vs direct"
    )
    guest_options(bench)
    bench.add_argument("--repetitions", type=int, default=5, help="per figure (default 5)")
    bench.add_argument("--connections", type=int, default=100_000,
                       help="simultaneous connections held (default 100000)")  # fmt: skip
    bench.add_argument("--hold", type=float, default=60.0, help="seconds to hold (default 60)")
    bench.add_argument("--mode", help="modes for throughput and rate (default: nat,dr,tun)")
    bench.add_argument("--scale-mode", default="nat,dr", help="modes for the held connections")
    bench.add_argument("--iperf-seconds", type=float, default=5.0, help="per iperf3 run")
    bench.add_argument("--rate-connections", type=int, default=2000,
                       help="connections per connection-rate measurement")  # fmt: skip
    bench.add_argument("--failover-streams", type=int, default=60,
                       help="streams through a director failure (0: skip)")  # fmt: skip
    bench.add_argument("--failover-fault", default="kill",
                       help="how the master fails: kill (its keepalived SIGKILLed), "
                            "stop or cut")  # fmt: skip
    bench.add_argument("--results", default=str(REPO / "results"), help="results directory")
    bench.add_argument("--run-id", help=argparse.SUPPRESS)
    bench.add_argument("--commit", help=argparse.SUPPRESS)

    sub.add_parser("clean", help="remove leftover namespaces, links, daemons and guests")
    return p


# -- helpers --------------------------------------------------------------------------------


def _modes(arg: str | None) -> list[str]:
    if not arg:
        return list(MODES)
    modes = [m.strip().lower() for m in arg.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            raise TestbedError(f"unknown forwarding mode {m!r} (choose from {', '.join(MODES)})")
    return modes


def _native() -> bool:
    """True if this process can use kernel IPVS directly."""
    from ._kernel import running_kernel_has_ipvs
    from ._vm import in_guest

    if in_guest():
        return True
    return os.geteuid() == 0 and running_kernel_has_ipvs()


def _guest(args: argparse.Namespace, results: Path | None = None) -> Any:
    from ._kernel import resolve_kernel
    from ._vm import GuestOptions, choose_emulation

    if os.geteuid() != 0:
        raise TestbedError("the testbed needs root (Mininet and the guest both do)")
    kernel = resolve_kernel(args.kernel, cache=CACHE / "kernels")
    emulation = choose_emulation(args.emulation, kernel, CACHE)
    extra = ()
    if results is not None and not results.resolve().is_relative_to(REPO):
        extra = (results.resolve(),)
    label = "KVM" if emulation == "kvm" else "TCG software emulation (slow: expect minutes)"
    _say(f"this kernel lacks IPVS: booting guest kernel {kernel.version} ({kernel.origin}) "
         f"with {label}")  # fmt: skip
    return GuestOptions(
        kernel=kernel, checkout=REPO, emulation=emulation, memory=args.memory, extra_rw=extra
    )


def _install_signal_handlers(*, exit_instead: bool = False) -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so every finally: cleans up.

    ``exit_instead``: raise SystemExit, for Mininet's CLI, which swallows
    KeyboardInterrupt (there Ctrl-C interrupts a command, not the lab).
    """

    def interrupt(signum: int, _frame: Any) -> None:
        if exit_instead:
            raise SystemExit(128 + signum)
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


# -- run ------------------------------------------------------------------------------------


def _conformance(args: argparse.Namespace, run_dir: Path) -> int:
    """Run the suite here (native or inside the guest)."""
    import pytest

    from ._results import ResultsPlugin

    modes = _modes(args.mode)
    select = []
    if len(modes) < len(MODES):
        select.append("(" + " or ".join(modes) + ")")
    if args.keyword:
        select.append(f"({args.keyword})")
    pytest_args = [
        str(REPO / "conformance"),
        "-v",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(REPO),
        f"--junitxml={run_dir / 'junit.xml'}",
        "-o",
        "junit_family=xunit2",
        "-o",
        "console_output_style=classic",
        "--capture=tee-sys",  # progress (topology build, ...) shows live, and in reports
    ]
    if args.topology:
        pytest_args.append(f"--topology={args.topology}")
    if select:
        pytest_args += ["-k", " and ".join(select)]
    meta = {"run_id": run_dir.name, "command": "run", "modes": modes}
    _say(f"running the conformance suite ({', '.join(modes)}); results in {run_dir}")
    code = pytest.main(pytest_args, plugins=[ResultsPlugin(run_dir, meta)])
    return 1 if code == pytest.ExitCode.NO_TESTS_COLLECTED else int(code)


def _finish(run_dir: Path, host_timings: dict[str, float]) -> None:
    """Merge host-side timings and render summary + HTML report."""
    from ._report import render

    results = run_dir / "results.json"
    if not results.exists():
        _say(f"no results were written to {run_dir}")
        return
    data = json.loads(results.read_text())
    data.setdefault("timings", {}).update({k: round(v, 2) for k, v in host_timings.items()})
    results.write_text(json.dumps(data, indent=2))
    report = render(run_dir)
    print((run_dir / "summary.txt").read_text(), end="", flush=True)
    _say(f"report: {report}")


def _run_id(args: argparse.Namespace) -> str:
    return args.run_id or datetime.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def cmd_run(args: argparse.Namespace) -> int:
    _modes(args.mode)
    load_topology(args.topology)  # bad topology: one line, before anything is built
    run_id = _run_id(args)
    results = Path(args.results)
    run_dir = results / run_id
    from ._vm import in_guest, run_in_guest

    if in_guest() or (_native() and not args.kernel):  # --kernel always means a guest
        run_dir.mkdir(parents=True, exist_ok=True)
        code = _conformance(args, run_dir)
        if not in_guest():
            _finish(run_dir, {})
        return code
    opts = _guest(args, results)
    argv = ["run", "--run-id", run_id, "--results", str(results.resolve())]
    for flag in ("mode", "keyword", "topology"):
        value = getattr(args, flag)
        if value:
            argv += [{"keyword": "-k"}.get(flag, f"--{flag}"), value]
    started = time.monotonic()
    code = run_in_guest(opts, argv)
    _finish(run_dir, {"vm_total_s": time.monotonic() - started})
    return code


# -- bench ----------------------------------------------------------------------------------


def _bench_options(args: argparse.Namespace) -> Any:
    from ._bench import BenchOptions

    return BenchOptions(
        repetitions=args.repetitions,
        connections=args.connections,
        hold=args.hold,
        modes=tuple(_modes(args.mode)),
        scale_modes=tuple(_modes(args.scale_mode)),
        iperf_seconds=args.iperf_seconds,
        rate_connections=args.rate_connections,
        failover_streams=args.failover_streams,
        failover_fault=args.failover_fault,
    )


def _commit() -> str:
    """HEAD of the checkout, marked +dirty when it has uncommitted changes."""

    def git(*a: str) -> str:
        done = subprocess.run(["git", "-c", f"safe.directory={REPO}", "-C", str(REPO), *a],
                              capture_output=True, text=True, check=False)  # fmt: skip
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def _bench_here(args: argparse.Namespace, run_dir: Path) -> int:
    """Bring up the cluster and measure (native or inside the guest)."""
    from ._bench import Bench
    from ._cluster import Cluster
    from ._results import environment

    opts = _bench_options(args)
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    started = time.monotonic()
    meta = {"run_id": run_dir.name, "command": "bench", "commit": args.commit or _commit(),
            "environment": environment(uptime=uptime)}  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    _say(f"bench: {opts}; results in {run_dir}")
    with Cluster(load_topology(args.topology)) as cluster:

        def save(data: dict[str, Any]) -> None:
            timings = cluster.timings | data["timings"]
            timings["bench_s"] = time.monotonic() - started
            out = meta | data | {"timings": {k: round(v, 2) for k, v in timings.items()}}
            (run_dir / "bench.json").write_text(json.dumps(out, indent=2))

        Bench(cluster, opts, _say).run(save)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    _bench_options(args)  # bad options: one line, before anything is built
    load_topology(args.topology)
    run_dir = Path(args.results) / _run_id(args)
    from ._vm import in_guest, run_in_guest

    if in_guest() or (_native() and not args.kernel):
        code = _bench_here(args, run_dir)
        if not in_guest():
            _finish_bench(run_dir, {})
        return code
    opts = _guest(args, Path(args.results))
    argv = ["bench", "--run-id", run_dir.name, "--results", str(Path(args.results).resolve()),
            "--commit", _commit()]  # fmt: skip
    for flag in ("repetitions", "connections", "hold", "mode", "scale_mode", "iperf_seconds",
                 "rate_connections", "failover_streams", "failover_fault",
                 "topology"):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    started = time.monotonic()
    code = run_in_guest(opts, argv)
    _finish_bench(run_dir, {"vm_total_s": time.monotonic() - started})
    return code


def _finish_bench(run_dir: Path, host_timings: dict[str, float]) -> None:
    from ._report import bench_summary, render

    bench = run_dir / "bench.json"
    if not bench.exists():
        _say(f"no bench results were written to {run_dir}")
        return
    data = json.loads(bench.read_text())
    data["timings"].update({k: round(v, 2) for k, v in host_timings.items()})
    bench.write_text(json.dumps(data, indent=2))
    report = render(run_dir)
    print(bench_summary(data), end="", flush=True)
    _say(f"report: {report}")


# -- test -----------------------------------------------------------------------------------


def _host_tests(marker: str) -> int:
    """pytest over tests/ in a fresh interpreter, selected by marker expression."""
    cmd = [sys.executable, "-m", "pytest", str(REPO / "tests"), "-q", "-m", marker,
           "-p", "no:cacheprovider"]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO).returncode


def cmd_test(args: argparse.Namespace) -> int:
    _say("unit tests (no root, no guest needed)")
    unit = _host_tests("not vm")
    run_args = argparse.Namespace(**vars(args), mode=None, keyword=None, run_id=None)
    _say("conformance suite on real IPVS")
    conformance = cmd_run(run_args)
    _say("integration tests (guest life cycle, interrupts)")
    integration = _host_tests("vm")
    failed = [
        name
        for name, code in (
            ("unit tests", unit),
            ("conformance", conformance),
            ("integration", integration),
        )
        if code != 0
    ]
    if failed:
        _say(f"FAILED: {', '.join(failed)}")
        return 1
    _say("all passed")
    return 0


# -- lab ------------------------------------------------------------------------------------

_LAB_GUIDE = """
LVS lab: {mode} ({summary})
  VIP {vip}:{port} on {director}; real servers {servers}; scheduler {scheduler}
  Try:
    c1 curl -s -w '\\n' http://{vip}/    # which real server answered?
    {director} ipvsadm -Ln --stats      # the director's table and counters
    {director} ipvsadm -Lnc             # its connection table
    r1 tcpdump -ni r1-eth0 -c 6 &       # then curl again: what does r1 receive?
    c1 {holder} >/tmp/h.json &
    {director} ipvsadm -Ln              # while c1 holds 1000 connections 30 s: ActiveConn
  Type exit (or Ctrl-D) to tear everything down.
"""


def cmd_lab(args: argparse.Namespace) -> int:
    spec = load_topology(args.topology, mode=args.mode, scheduler=args.scheduler)
    from ._vm import in_guest, run_interactive

    if not (in_guest() or (_native() and not args.kernel)):
        opts = _guest(args)
        argv = ["lab", args.mode, "--scheduler", args.scheduler]
        if args.topology:
            argv += ["--topology", args.topology]
        return run_interactive(opts, argv)
    from mininet.cli import CLI
    from mininet.log import setLogLevel

    from ._cluster import Cluster
    from ._modes import MODES as MODE_INFO

    _install_signal_handlers(exit_instead=True)
    with Cluster(spec) as cluster:
        s = spec.service
        print(
            _LAB_GUIDE.format(
                mode=args.mode.upper(),
                summary=MODE_INFO[args.mode].summary,
                vip=s.vip,
                port=s.port,
                director=spec.active.name,
                servers=", ".join(f"{r.name} {r.ip}" for r in spec.real_servers),
                scheduler=s.scheduler,
                holder=f"{sys.executable} -m loadgen.holder --target {s.vip}:{s.port} "
                f"--source {spec.clients[0].ip} --count 1000 --hold 30",
            )
        )
        setLogLevel("output")  # the CLI prints command output at this level
        CLI(cluster.net)
    return 0


# -- clean ----------------------------------------------------------------------------------


def cmd_clean(_args: argparse.Namespace) -> int:
    from ._cleanup import clean_guests, clean_native

    if os.geteuid() != 0:
        raise TestbedError("clean needs root")
    removed = clean_guests() + clean_native()
    _say(f"clean: removed {len(removed)} item(s)" if removed else "clean: nothing to remove")
    return 0


COMMANDS = {
    "run": cmd_run,
    "test": cmd_test,
    "lab": cmd_lab,
    "bench": cmd_bench,
    "clean": cmd_clean,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _install_signal_handlers()
    try:
        return COMMANDS[args.command](args)
    except TestbedError as exc:
        print(f"lvs-testbed: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("lvs-testbed: interrupted; cleaned up", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
