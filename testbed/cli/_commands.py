"""What each command does where kernel IPVS is (natively, or inside the guest)."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cluster import PREFIX_ENV
from ..guest import (
    BOOT_ENV,
    QUIET_ENV,
    GuestOptions,
    boot_uptime,
    guests_stopped,
    in_guest,
    stop_guests,
)
from ..registry import CHECKSUMS, FAMILIES, MODES, PROTOCOLS, SCHEDULERS, load_profiles
from ..topology import load_topology
from ..util import REPO, TestbedError, own_output
from ._dispatch import (
    CACHE,
    Command,
    commit,
    dispatch,
    dispatch_together,
    install_signal_handlers,
    native,
    new_run_dir,
    results_dir,
    say,
)
from ._parser import parse

if TYPE_CHECKING:
    from ..labs import Mailbox


@dataclass(frozen=True)
class SuiteRun:
    """One conformance run of `test`: its command line, whether it runs alongside the
    first (in the same guest, at the same time) rather than after it, and the module
    it is the run of, if any (left out when the profile selects none of that module)."""

    argv: tuple[str, ...]
    alongside: bool = False
    module: str | None = None


LABS_MODULE = "conformance/test_labs.py"
# What `test` runs on real IPVS: the suite on the default topology and, alongside it,
# the checks that must hold on any topology (on a second one with other names and
# counts) and the labs (on a cluster of their own: they change hosts by hand, as
# students do, and mostly wait on VRRP and health-check timers). The first run's tests
# that measure time wait for both to end (conformance/conftest.py); the rest of the
# guest's two CPUs would otherwise be idle.
TEST_RUNS: tuple[SuiteRun, ...] = (
    SuiteRun(("-k", "not test_labs")),
    # -k matches module names too: whole modules, not every test with "arp" in its name
    # (the fwmark block a topology leaves free is a unit test's: tests/test_control_plane.py)
    SuiteRun(
        ("--topology", "wide", "-k",
         "(test_forwarding or test_schedulers or test_neighbours) and not fwmark"),
        alongside=True,
    ),
    SuiteRun(("-k", "test_labs"), alongside=True, module=LABS_MODULE),
)  # fmt: skip
# the bridges of the runs alongside, one prefix each (testbed/cluster: PREFIX_ENV)
ALONGSIDE_PREFIXES = ("lva", "lvb")
# After the full profile on the default kernel, `test` runs the smoke profile on each of
# these (conformance/kernel-pins.toml: versions CI boots, updated deliberately) and fails
# on a difference between the kernels that no ledger entry explains.
SMOKE_KERNELS = ("pinned:trixie", "pinned:sid")


def check_suite(args: argparse.Namespace) -> None:
    """Registry selections and the topology: one line each, before anything is built."""
    MODES.select(args.mode)
    PROTOCOLS.select(args.protocol)
    FAMILIES.select(args.family)
    CHECKSUMS.select(args.checksums)
    load_profiles()[args.profile]
    load_topology(args.topology)


# -- run ------------------------------------------------------------------------------------


def run_here(args: argparse.Namespace, run_dir: Path | None) -> int:
    """The conformance suite, natively or inside the guest."""
    import pytest

    from ..report import ResultsPlugin

    assert run_dir is not None
    pytest_args = [
        str(REPO / "conformance"), "-v", "-p", "no:cacheprovider", "--rootdir", str(REPO),
        f"--junitxml={run_dir / 'junit.xml'}", "-o", "junit_family=xunit2",
        "-o", "console_output_style=classic",
        "--capture=tee-sys",  # progress (topology build, ...) shows live, and in reports
        # a test still running after this long has every thread's stack printed, so
        # a hang names where it is (it runs on: the run's own time limit ends it)
        "-o", "faulthandler_timeout=900",
        # and one still running after 20 minutes fails (pytest-timeout), so a hang is a
        # red test with its stack rather than a run that never ends (the longest test
        # takes about 3 minutes under emulation)
        "--timeout=1200",
        f"--combinations={args.combinations}",
        f"--profile={args.profile}",
    ]  # fmt: skip
    for option in ("topology", "mode", "protocol", "family", "checksums"):
        if value := getattr(args, option):
            pytest_args.append(f"--{option}={value}")
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    meta = {"run_id": run_dir.name, "command": "run", "commit": args.commit or commit(),
            "topology": args.topology or "default", "combinations": args.combinations,
            "profile": args.profile}  # fmt: skip
    say(f"running the conformance suite; results in {run_dir}")
    plugins = [ResultsPlugin(run_dir, meta)]
    if getattr(args, "pyprofile", False):
        import cProfile

        # where a test's time goes: shell round trips, waits, decoding (wall clock)
        profile = cProfile.Profile()
        code = profile.runcall(pytest.main, pytest_args, plugins=plugins)
        profile.dump_stats(run_dir / "pyprofile.pstats")
    else:
        code = pytest.main(pytest_args, plugins=plugins)
    return 1 if code == pytest.ExitCode.NO_TESTS_COLLECTED else int(code)


RUN = Command(name="run", here=run_here, check=check_suite, writes_results=True)


# -- bench ----------------------------------------------------------------------------------


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise TestbedError(f"{option}: comma-separated whole numbers, not {text!r}") from None


def bench_options(args: argparse.Namespace) -> Any:
    from ..bench import DIRECT, BenchOptions

    levels = None
    if args.scale_levels:
        levels = _int_list(args.scale_levels, "--scale-levels")
    elif args.connections is not None:
        ladder = BenchOptions().scale_levels
        levels = (*(n for n in ladder if n < args.connections), args.connections)
    scale_paths = None
    if args.scale_mode:
        wanted = args.scale_mode.split(",")
        modes = [m for m in wanted if m != DIRECT]
        chosen_modes = [m.name for m in MODES.select(",".join(modes))] if modes else []
        scale_paths = (*([DIRECT] if DIRECT in wanted else []), *chosen_modes)
    chosen = {
        "modes": tuple(m.name for m in MODES.select(args.mode)),
        "scale_modes": scale_paths,
        "scale_levels": levels,
    }
    return BenchOptions(
        repetitions=args.repetitions,
        hold=args.hold,
        iperf_seconds=args.iperf_seconds,
        rate_connections=args.rate_connections,
        sweep=_int_list(args.sweep, "--sweep"),
        conn_tab_bits=args.conn_tab_bits,
        connect_tool=args.connect_tool,
        failover_streams=args.failover_streams,
        failover_fault=args.failover_fault,
        **{k: v for k, v in chosen.items() if v is not None},
    )


def check_bench(args: argparse.Namespace) -> None:
    opts = bench_options(args)
    load_topology(args.topology)
    if len({_kernel_slug(k) for k in args.kernels or ()}) < len(args.kernels or ()):
        raise TestbedError("bench: a kernel is given twice")
    if opts.conn_tab_bits is not None and native(args) and not in_guest():
        raise TestbedError("--conn-tab-bits is given at a guest's boot: name a --kernel")
    # slab_nomerge: ip_vs_conn keeps a slab cache of its own, so its size per entry
    # is IPVS's alone (SLUB otherwise merges caches of one object size)
    args.boot_args = ["slab_nomerge"]
    if opts.conn_tab_bits is not None:
        args.boot_args.append(f"ip_vs.conn_tab_bits={opts.conn_tab_bits}")


def _bench_many(args: argparse.Namespace) -> bool:
    return len(args.kernels or ()) > 1


def _without_kernels(argv: list[str]) -> list[str]:
    """A command line without its --kernel options (each kernel's run gets its own)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--kernel":
            skip = True
        elif not a.startswith("--kernel="):
            out.append(a)
    return out


def bench_here(args: argparse.Namespace, run_dir: Path | None) -> int:
    """Bring up the cluster and measure, natively or inside the guest; with several
    kernels, a bench on each in turn, then their figures side by side."""
    from ..bench import Bench
    from ..cluster import Cluster
    from ..report import environment

    assert run_dir is not None
    if _bench_many(args):
        return _bench_kernels(args, run_dir)
    opts = bench_options(args)
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    started = time.monotonic()
    meta = {"run_id": run_dir.name, "command": "bench", "commit": args.commit or commit(),
            "environment": environment(uptime=uptime),
            "cmdline": _boot_args()}  # fmt: skip
    say(f"bench: {opts}; results in {run_dir}")
    with Cluster(load_topology(args.topology)) as cluster:

        def save(data: dict[str, Any]) -> None:
            timings = cluster.timings | data["timings"]
            timings["bench_s"] = time.monotonic() - started
            out = meta | data | {"timings": {k: round(v, 2) for k, v in timings.items()}}
            (run_dir / "bench.json").write_text(json.dumps(out, indent=2))

        Bench(cluster, opts, say).run(save)
    return 0


def _boot_args() -> str:
    """The kernel's command line without what virtme-ng adds to boot the guest."""
    words = Path("/proc/cmdline").read_text().split()
    return " ".join(w for w in words if not w.startswith(("virtme", "init=")) and "`" not in w)


def _bench_kernels(args: argparse.Namespace, top: Path) -> int:
    """One bench per kernel (a sub-directory each), then bench-kernels.txt and the
    side-by-side plots in ``top``."""
    from ..report import bench_kernels

    benches: dict[str, dict[str, Any]] = {}
    codes = []
    for kernel in args.kernels:
        where = top / _kernel_slug(kernel)
        argv = [*_without_kernels(args.argv), "--kernel", kernel, "--results", str(where)]
        say(f"bench on {kernel}: lvs-testbed {' '.join(argv)}")
        codes.append(dispatch(BENCH, parse(argv), argv))
        found = sorted(where.glob("*/bench.json"))
        if found:
            benches[kernel] = json.loads(found[-1].read_text())
    if benches:
        print(bench_kernels(benches, top), end="", flush=True)
    return 1 if any(codes) or len(benches) < len(args.kernels) else 0


BENCH = Command(name="bench", here=bench_here, check=check_bench, writes_results=True,
                needs_ipvs=lambda args: not _bench_many(args))  # fmt: skip


# -- test -----------------------------------------------------------------------------------


def host_tests(marker: str) -> int:
    """pytest over tests/ in a fresh interpreter, selected by marker expression."""
    cmd = [sys.executable, "-m", "pytest", str(REPO / "tests"), "-q", "-m", marker,
           "-p", "no:cacheprovider"]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO).returncode


def test_here(args: argparse.Namespace, _run_dir: Path | None) -> int:
    """Unit tests, the conformance runs (natively, or all in one guest boot),
    life-cycle tests."""
    if args.runs:  # inside the guest: the conformance runs only
        return run_each(json.loads(args.runs))
    say("unit tests (no root, no guest needed)")
    results = [("unit tests", host_tests("not vm"))]
    given = _without_option(args.argv[1:], "--smoke-kernel")
    profile = load_profiles()[args.profile]
    suites = [r for r in TEST_RUNS if r.module is None or profile.selects_from(r.module)]
    argvs = [["run", *given, *r.argv] for r in suites]
    parsed = [(parse(a), a) for a in argvs]
    if native(args):
        for run_args, argv in parsed:
            say(f"conformance suite on real IPVS: lvs-testbed {' '.join(argv)}")
            results.append((" ".join(argv), dispatch(RUN, run_args, argv)))
    else:
        say("conformance suites on real IPVS, in one guest boot: "
            + "; ".join(f"lvs-testbed {' '.join(a)}" for a in argvs))  # fmt: skip

        def batch(sent: list[list[str]]) -> list[str]:
            together = zip(sent, suites, strict=True)
            runs = [{"argv": a, "alongside": r.alongside} for a, r in together]
            return ["test", "--runs", json.dumps(runs)]

        codes = dispatch_together(RUN, parsed, batch)
        results += [(" ".join(a), c) for a, c in zip(argvs, codes, strict=True)]
    legs = _smoke_kernels(args)
    if legs:
        main_args = parsed[0][0]
        main_dir = results_dir(main_args) / main_args.run_id
        results.append(("kernel matrix", _smoke_legs(args, main_dir, legs)))
    say("integration tests (guest life cycle, interrupts)")
    results.append(("integration", host_tests("vm")))
    failed = [name for name, code in results if code != 0]
    if failed:
        say(f"FAILED: {'; '.join(failed)}")
        return 1
    say("all passed")
    return 0


def _without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` less every ``option VALUE`` and ``option=VALUE``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


def _smoke_kernels(args: argparse.Namespace) -> list[str]:
    given = args.smoke_kernels or list(SMOKE_KERNELS)
    return [] if given == ["none"] else [k for k in given if k != args.kernel]


def check_test(args: argparse.Namespace) -> None:
    check_suite(args)
    given = args.smoke_kernels or []
    if "none" in given and len(given) > 1:
        raise TestbedError("test: --smoke-kernel none means no kernel matrix; give it alone")
    if len({_kernel_slug(k) for k in given}) < len(given):
        raise TestbedError("test: a --smoke-kernel is given twice")


# what the full run's selection passes on to the smoke runs beside it (`matrix` too)
SELECTION = ("mode", "protocol", "family", "checksums", "topology", "emulation", "memory")


def _selection(args: argparse.Namespace) -> list[str]:
    return [
        *(f"--{o}={v}" for o in SELECTION if (v := getattr(args, o, None))),
        f"--combinations={args.combinations}",
        *(["--console"] if getattr(args, "console", False) else []),
    ]


def _smoke_legs(args: argparse.Namespace, main_dir: Path, kernels: list[str]) -> int:
    """The smoke profile on each kernel, then the kernel matrix of the full run beside
    them, in the full run's kernels/ (as `matrix` writes it): 1 if a kernel could not
    be set up or its run did not get going, or on a difference no ledger entry explains.
    A kernel that fails so does not stop the others: their comparison is still made."""
    if not (main_dir / "results.json").is_file():
        say(f"matrix: the full run wrote no results ({main_dir}): nothing to compare")
        return 1
    top = main_dir / "kernels"
    label = f"{args.kernel or 'default'} ({args.profile})"
    runs = {label: json.loads((main_dir / "results.json").read_text())}
    reports = {label: main_dir / "report.html"}
    lost = []
    ran = _side_by_side(kernels, top, ["--profile", "smoke", *_selection(args)])
    for kernel, found in ran.items():
        if found is None:
            lost.append(kernel)
            continue
        runs[f"{kernel} (smoke)"] = json.loads(found.read_text())
        reports[f"{kernel} (smoke)"] = found.parent / "report.html"
    differ = _write_comparison(top, runs, reports)
    if lost:
        say(f"matrix: no run on {', '.join(lost)}: those kernels are not compared")
    return 1 if lost else differ


def _side_by_side(kernels: list[str], top: Path, selection: list[str]) -> dict[str, Path | None]:
    """A `run` on each kernel (in ``top``, a sub-directory each): its results.json, or
    None. Several guests boot at once, one host CPU each at least: a run under
    emulation keeps about one CPU busy, so two guests of one CPU each on two host
    CPUs ran the smoke profile on trixie and sid in 720 s, against 1,064 one after
    the other, and passed; two guests of two CPUs each crawled there (2 tests in
    7.5 minutes: more vCPUs than host CPUs). Each run's output is shown whole when
    it ends."""
    host_cpus = len(os.sched_getaffinity(0))  # the CPUs this process may use
    lanes = max(1, min(len(kernels), host_cpus))
    cpus = min(GuestOptions.cpus, host_cpus // lanes)
    if lanes > 1:
        say(f"matrix: {', '.join(kernels)}: {lanes} guests at a time, {cpus} CPU(s) each; "
            "each run's output follows when it ends")  # fmt: skip
    shown = threading.Lock()

    def leg(kernel: str) -> Path | None:
        where = top / _kernel_slug(kernel)
        console = where / "console.txt"
        try:
            where.mkdir(parents=True, exist_ok=True)
            with own_output(console) if lanes > 1 else contextlib.nullcontext():
                try:
                    return _suite_on(kernel, where, [*selection, f"--cpus={cpus}"])
                except TestbedError as exc:  # a kernel that cannot be fetched or booted
                    say(f"matrix: {kernel}: {exc}")
                except Exception as exc:  # a tool failing in one leg: the others go on
                    say(f"matrix: {kernel}: {type(exc).__name__}: {exc}")
                    traceback.print_exc(file=sys.stdout)
                return None
        except OSError as exc:  # its directory or console file cannot be written
            say(f"matrix: {kernel}: {exc}")
            return None
        finally:
            if lanes > 1 and console.exists():
                with shown:
                    say(f"matrix: {kernel}: its run's output ({console}):")
                    print(console.read_text(errors="replace"), end="", flush=True)

    with ThreadPoolExecutor(lanes) as pool:
        try:
            found = list(pool.map(leg, kernels))
        except BaseException:  # Ctrl-C or SIGTERM reach this thread: end the guests
            stop_guests()
            raise
    return dict(zip(kernels, found, strict=True))


def _suite_on(kernel: str, where: Path, selection: list[str]) -> Path | None:
    """A `run` of the suite on ``kernel`` into ``where``: its results.json, None if the
    run did not get going (no results, no tests, or an exit status other than pytest's
    passed or failed). Such a run gets one more try with the guest kernel's console
    shown: a boot that fails under emulation says nothing otherwise, and the second try
    tells a kernel that cannot boot here from a boot that failed once."""
    tries = [[]] if "--console" in selection else [[], ["--console"]]
    for again in tries:
        if guests_stopped():  # interrupted beside other runs: no second try
            return None
        argv = ["run", "--kernel", kernel, *selection, *again, "--results", str(where)]
        say(f"matrix: {kernel}: lvs-testbed {' '.join(argv)}")
        before = set(where.glob("*/"))
        code = dispatch(RUN, parse(argv), argv)
        found = [d / "results.json" for d in sorted(set(where.glob("*/")) - before)]
        ran = json.loads(found[-1].read_text()) if found and found[-1].is_file() else {}
        if ran.get("tests") and ran.get("exit_status") in (0, 1):
            return found[-1]
        say(
            f"matrix: the run on {kernel} did not get going (exit status "
            f"{ran.get('exit_status', code)}, {len(ran.get('tests', []))} tests; {where})"
            + ("" if again is tries[-1] else "; once more, with the kernel's console shown")
        )
    return None


def run_each(runs: list[dict[str, Any]]) -> int:
    """Runs each in its own interpreter (one pytest session each): one after another,
    except those marked ``alongside``, which start with the first and run beside it,
    each on bridges of its own (ALONGSIDE_PREFIXES); until they have all ended, the
    others hold back the tests that measure time (QUIET_ENV names the lock they hold).
    Their consoles go to console.txt in their run directories, and are shown when the
    others are done. The guest's boot time is handed on, as theirs."""
    os.environ.setdefault(BOOT_ENV, str(boot_uptime()))
    beside = [r["argv"] for r in runs if r.get("alongside")]
    if len(beside) > len(ALONGSIDE_PREFIXES):
        raise TestbedError(f"test: at most {len(ALONGSIDE_PREFIXES)} runs alongside the others")
    lock_path = Path(tempfile.gettempdir(), f"lvs-testbed-quiet.{os.getpid()}")
    codes: list[int] = []
    env = dict(os.environ)
    alongside: list[subprocess.Popen[bytes]] = []
    releaser = None
    with open(lock_path, "w") as lock:
        if beside:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for argv, prefix in zip(beside, ALONGSIDE_PREFIXES, strict=False):
                console = _run_dir_of(argv) / "console.txt"
                say(f"lvs-testbed {shlex.join(argv)} (alongside; its output: {console})")
                with open(console, "w") as out:
                    alongside.append(subprocess.Popen(
                        [sys.executable, "-m", "testbed.cli", *argv], cwd=REPO,
                        env=env | {PREFIX_ENV: prefix}, stdout=out, stderr=subprocess.STDOUT,
                    ))  # fmt: skip
            env[QUIET_ENV] = str(lock_path)
            releaser = threading.Thread(target=_release_when_done, args=(alongside, lock),
                                        daemon=True)  # fmt: skip
            releaser.start()
        try:
            for run in (r["argv"] for r in runs if not r.get("alongside")):
                say(f"lvs-testbed {shlex.join(run)}")
                codes.append(subprocess.run([sys.executable, "-m", "testbed.cli", *run],
                                            cwd=REPO, env=env).returncode)  # fmt: skip
            for proc, argv in zip(alongside, beside, strict=True):
                codes.append(proc.wait())
                say(f"lvs-testbed {shlex.join(argv)} (ran alongside):")
                print((_run_dir_of(argv) / "console.txt").read_text(), end="", flush=True)
        finally:
            for proc in alongside:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait()
            if releaser is not None:  # it unlocks before the lock file closes
                releaser.join()
    lock_path.unlink(missing_ok=True)
    return 1 if any(codes) else 0


def _run_dir_of(argv: list[str]) -> Path:
    """Where a run's command line puts its results (``--results`` and ``--run-id``,
    as the host writes them: the last of each)."""

    def last(option: str) -> str:
        return argv[len(argv) - 1 - argv[::-1].index(option) + 1]

    return Path(last("--results"), last("--run-id"))


def _release_when_done(procs: list[subprocess.Popen[bytes]], lock: Any) -> None:
    for proc in procs:
        proc.wait()
    fcntl.flock(lock, fcntl.LOCK_UN)


TEST = Command(name="test", here=test_here, check=check_test, needs_ipvs=False)


# -- matrix ---------------------------------------------------------------------------------


def _kernel_slug(kernel: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", kernel.strip("/")) or "kernel"


def check_matrix(args: argparse.Namespace) -> None:
    from ..kernel import load_ledger

    if len(args.kernels) < 2:
        raise TestbedError("matrix compares kernels: give --kernel at least twice")
    if len({_kernel_slug(k) for k in args.kernels}) < len(args.kernels):
        raise TestbedError("matrix: a kernel is given twice")
    check_suite(args)
    load_ledger()


def matrix_here(args: argparse.Namespace, _run_dir: Path | None) -> int:
    """The suite once per kernel (each a `run`, in its own sub-directory), then the
    comparison: comparison.json, matrix.txt and matrix.html in the matrix directory."""
    top = new_run_dir(results_dir(args), args)
    selection = [*_selection(args), f"--profile={args.profile}"]
    if args.keyword:
        selection += ["-k", args.keyword]
    runs: dict[str, dict[str, Any]] = {}
    reports: dict[str, Path] = {}
    for kernel in args.kernels:
        where = top / _kernel_slug(kernel)
        found = _suite_on(kernel, where, selection)
        if found is None:
            raise TestbedError(f"matrix: the run on {kernel} did not get going ({where})")
        runs[kernel] = json.loads(found.read_text())
        reports[kernel] = found.parent / "report.html"
    return _write_comparison(top, runs, reports)


def _write_comparison(top: Path, runs: dict[str, dict[str, Any]], reports: dict[str, Path]) -> int:
    """comparison.json, matrix.txt and matrix.html in ``top``; 1 on a difference no
    ledger entry explains or a test failing on every kernel."""
    from ..kernel import load_ledger
    from ..report import compare_runs, render_matrix

    comparison = compare_runs(runs, load_ledger())
    top.mkdir(parents=True, exist_ok=True)
    (top / "comparison.json").write_text(json.dumps(comparison.to_json(), indent=2))
    (top / "matrix.txt").write_text(comparison.summary() + "\n")
    (top / "matrix.html").write_text(render_matrix(comparison, runs, reports, top))
    print(comparison.summary(), flush=True)
    say(f"matrix: {top / 'matrix.html'}")
    everywhere_failing = [n for n, seen in comparison.outcomes.items()
                          if all(o in ("failed", "error") for o in seen.values())]  # fmt: skip
    return 1 if comparison.unexplained or everywhere_failing else 0


MATRIX = Command(name="matrix", here=matrix_here, check=check_matrix, needs_ipvs=False)


# -- compare --------------------------------------------------------------------------------


_RUN_ID = re.compile(r"^\d{8}-\d{6}-")


def _run_results(path: Path, name: str = "results.json") -> Path:
    """A run's results.json (or bench.json) from the file, its run directory, or a
    results directory (its newest run, which must have written one: a run that never
    got going is not judged by an older one's results)."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise TestbedError(f"compare: {path} does not exist")
    if not (path / name).is_file():
        runs = sorted(p for p in path.iterdir() if p.is_dir() and _RUN_ID.match(p.name))
        path = runs[-1] if runs else path
    if not (path / name).is_file():
        raise TestbedError(f"compare: no {name} in {path}")
    return path / name


def _benches(given: list[str]) -> list[Path] | None:
    """The bench.json of each run given, if every one is a bench run."""
    try:
        return [_run_results(Path(g), "bench.json") for g in given]
    except TestbedError:
        return None


def _label(data: dict[str, Any], path: Path, taken: set[str]) -> str:
    kernel = str(data.get("environment", {}).get("kernel", "")) or path.parent.name
    return kernel if kernel not in taken else f"{kernel} ({path.parent.name})"


def check_compare(args: argparse.Namespace) -> None:
    if len(args.runs) < 2:
        raise TestbedError("compare: give two runs (good, candidate) or more")
    if _benches(args.runs):
        return
    for run in args.runs[:1] if _bisecting(args) else args.runs:
        _run_results(Path(run))  # the candidate of a bisection step may be missing


def _bisecting(args: argparse.Namespace) -> bool:
    return len(args.runs) == 2 and not args.out


def compare_here(args: argparse.Namespace, _run_dir: Path | None) -> int:
    """Two runs: one bisection step (0 good, 1 bad, 125 cannot test). More, or --out: a
    matrix of runs made anywhere (one kernel per CI machine). Bench runs: their figures
    side by side."""
    from ..kernel import load_ledger
    from ..report import bench_kernels, bisect_verdict

    if benches := _benches(args.runs):  # benches made anywhere, side by side
        data = [json.loads(b.read_text()) for b in benches]
        labelled: dict[str, dict[str, Any]] = {}
        for path, bench in zip(benches, data, strict=True):
            labelled[_label(bench, path, set(labelled))] = bench
        top = Path(args.out) if args.out else new_run_dir(results_dir(args), args)
        top.mkdir(parents=True, exist_ok=True)
        print(bench_kernels(labelled, top), end="", flush=True)
        say(f"report: {top / 'bench-kernels.html'}")
        return 0
    if _bisecting(args):
        good = json.loads(_run_results(Path(args.runs[0])).read_text())
        try:
            candidate = json.loads(_run_results(Path(args.runs[1])).read_text())
        except TestbedError as exc:
            say(f"compare: cannot test: {exc}")
            return 125
        code, lines = bisect_verdict(good, candidate, load_ledger())
        for line in lines:
            print(f"  {line}", flush=True)
        say(f"compare: {({0: 'good', 1: 'bad', 125: 'cannot test'})[code]}")
        return code
    runs: dict[str, dict[str, Any]] = {}
    reports: dict[str, Path] = {}
    for given in args.runs:
        path = _run_results(Path(given))
        data = json.loads(path.read_text())
        label = _label(data, path, set(runs))
        runs[label], reports[label] = data, path.parent / "report.html"
    top = Path(args.out) if args.out else new_run_dir(results_dir(args), args)
    return _write_comparison(top, runs, reports)


COMPARE = Command(name="compare", here=compare_here, check=check_compare, needs_ipvs=False)


# -- lab ------------------------------------------------------------------------------------

_LAB_GUIDE = """
LVS lab: {mode} ({summary})
  VIP {endpoint} on {director}; real servers {servers}; scheduler {scheduler}
  The table, as you would build it by hand:
{commands}
  Try:
    {client} {request}    # which real server answered?
    {director} ipvsadm -Ln --stats      # the director's table and counters
    {director} ipvsadm -Lnc             # its connection table
    {rs} tcpdump -ni {rs}-eth0 -c 6 &       # then ask again: what does {rs} receive?
    {client} {holder} >/tmp/h.json &
    {director} ipvsadm -Ln              # while {client} holds 1000 connections 30 s: ActiveConn
  Type exit (or Ctrl-D) to tear everything down.
"""


def _lab_of(args: argparse.Namespace) -> Any:
    """The lab named, or None for a forwarding mode (the free-exploration cluster)."""
    from ..labs import LABS

    name = args.mode.lower()
    if name in MODES or name == "list":
        return None
    if name not in LABS:
        raise TestbedError(
            f"unknown lab or forwarding mode {args.mode!r} (labs: {', '.join(LABS)}; "
            f"modes: {', '.join(MODES)}; `lvs-testbed lab list` describes them)"
        )
    return LABS[name]


def _applied(lab: Any, what: str | None) -> tuple[str, Any] | None:
    """--apply: ('solution', steps) or ('wrong-N: title', steps); None without it."""
    if what is None:
        return None
    if what == "solution":
        return "the reference solution", lab.solution
    n = what.removeprefix("wrong-")
    if n.isdigit() and 1 <= int(n) <= len(lab.wrong):
        wrong = lab.wrong[int(n) - 1]
        return f"wrong solution {n}: {wrong.title}", wrong.steps
    choices = ", ".join(["solution", *(f"wrong-{i}" for i in range(1, len(lab.wrong) + 1))])
    raise TestbedError(f"lab {lab.name}: --apply {what!r} is not one of {choices}")


def check_lab(args: argparse.Namespace) -> None:
    lab = _lab_of(args)
    if lab is None:
        if args.check or args.solution or args.apply:
            raise TestbedError("--check, --solution and --apply are for labs, not modes")
        if args.mode.lower() != "list":
            load_topology(args.topology, mode=MODES[args.mode.lower()].name,
                          scheduler=args.scheduler)  # fmt: skip
        return
    if args.apply and not args.check:
        raise TestbedError("--apply goes with --check")
    _applied(lab, args.apply)
    lab.spec(load_topology(args.topology))


# a check of a running lab under emulation: its tasks' traffic and captures, a minute
RUNNING_LAB_CHECK_S = 300.0


def _lab_needs_ipvs(args: argparse.Namespace) -> bool:
    return not (args.mode.lower() == "list" or args.solution or _running_lab(args))


def _running_lab(args: argparse.Namespace) -> Mailbox | None:
    """The mailbox of the lab `--check` (without --apply) names, if that lab is running
    (in another terminal, natively or in its guest): the check goes to it."""
    from ..labs import MAILBOXES, Mailbox

    if not hasattr(args, "running_lab"):  # asked twice: where to run, then what to do
        lab = _lab_of(args)
        box = None if lab is None or not args.check or args.apply else Mailbox(MAILBOXES, lab.name)
        args.running_lab = box if box is not None and box.live() else None
    return args.running_lab


def lab_list() -> str:
    from ..labs import KINDS, LABS

    lines = []
    for kind, about in KINDS.items():
        lines.append(f"{kind} ({about}):")
        lines += [f"  {lab.name:<22} {lab.minutes:>3} min  {lab.title}"
                  for lab in LABS.values() if lab.kind == kind]  # fmt: skip
    lines.append("Start one with `lvs-testbed lab NAME`; inside, type `check`.")
    return "\n".join(lines)


def lab_here(args: argparse.Namespace, _run_dir: Path | None) -> int:
    from ..cluster import Cluster
    from ..labs import LabSession, lab_cli

    lab = _lab_of(args)
    if args.mode.lower() == "list":
        print(lab_list())
        return 0
    if lab is None:
        return _explore(args)
    spec = load_topology(args.topology)
    if args.solution:
        print(f"# {lab.name}: {lab.title}\n{lab.solution_text(lab.spec(spec))}")
        return 0
    if box := _running_lab(args):
        say(f"lab {lab.name}: checking the running lab (started in another terminal)")
        answer = box.ask(timeout=RUNNING_LAB_CHECK_S)
    else:
        install_signal_handlers(exit_instead=not args.check)
        with Cluster(spec) as cluster, LabSession(cluster, lab) as session:
            if not args.check:
                print(session.guide(), flush=True)
                lab_cli(session)
                return 0
            if applied := _applied(lab, args.apply):
                say(f"lab {lab.name}: applying {applied[0]}")
                session.apply(applied[1])
            answer = session.answer()
    print(answer.report, flush=True)
    return 0 if answer.ok else 1


def _explore(args: argparse.Namespace) -> int:
    """A working cluster in one mode, in Mininet's CLI, with a short guide."""
    from mininet.cli import CLI
    from mininet.log import setLogLevel

    from ..cluster import Cluster
    from ..ipvs import ipvsadm_commands

    spec = load_topology(args.topology, mode=args.mode.lower(), scheduler=args.scheduler)
    install_signal_handlers(exit_instead=True)
    with Cluster(spec) as cluster:
        s, client = spec.service, spec.clients[0]
        print(
            _LAB_GUIDE.format(
                mode=s.forwarding.title,
                summary=s.forwarding.summary,
                endpoint=s.endpoint,
                director=spec.active.name,
                servers=", ".join(f"{r.name} {r.ip}" for r in spec.real_servers),
                scheduler=SCHEDULERS[s.scheduler].name,
                commands="\n".join(
                    f"    {spec.active.name} {c}" for c in ipvsadm_commands(s, spec.real_servers)
                ),
                client=client.name,
                rs=spec.real_servers[0].name,
                request=s.transport.client(s.endpoint, 1),
                holder=f"{sys.executable} -m loadgen.holder --target {s.endpoint} "
                f"--source {client.ip} --count 1000 --hold 30",
            )
        )
        setLogLevel("output")  # the CLI prints command output at this level
        CLI(cluster.net)
    return 0


LAB = Command(name="lab", here=lab_here, check=check_lab, needs_ipvs=_lab_needs_ipvs,
              interactive=lambda args: not args.check)  # fmt: skip


# -- clean ----------------------------------------------------------------------------------


def clean_here(_args: argparse.Namespace, _run_dir: Path | None) -> int:
    from ..cluster import clean_guests, clean_native

    if os.geteuid() != 0:
        raise TestbedError("clean needs root")
    from ..labs import clean_mailboxes

    removed = clean_guests() + clean_native() + clean_mailboxes()
    say(f"clean: removed {len(removed)} item(s)" if removed else "clean: nothing to remove")
    return 0


CLEAN = Command(name="clean", here=clean_here, needs_ipvs=False)


def pin_here(args: argparse.Namespace, _run_dir: Path | None) -> int:
    """Record each release's newest kernel in conformance/kernel-pins.toml."""
    from ..guest import PINS, pin_release

    for release in args.releases:
        pin = pin_release(release, cache=CACHE / "kernels")
        packages = ", ".join(f"{p} {v}" for p, v in pin.packages.items())
        say(f"pinned {release}: {pin.version} ({packages})")
    say(f"written {PINS}: commit it to change what CI boots")
    return 0


PIN = Command(name="pin", here=pin_here, check=lambda args: None, needs_ipvs=False)


COMMANDS = {c.name: c for c in (RUN, TEST, MATRIX, COMPARE, LAB, BENCH, PIN, CLEAN)}
