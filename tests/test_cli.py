"""The CLI: bad input in one line (exit 2, no traceback), and every command's host side
with the guest runner replaced at its boundary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--mode", "nat,snat"], "unknown forwarding mode 'snat'"),
        (["run", "--topology", "/nonexistent.toml"], "does not exist"),
        (["lab", "xyz"], "unknown lab or forwarding mode 'xyz'"),
        (["lab", "dr", "--scheduler", "fastest"], "unknown scheduler 'fastest'"),
        (["run", "--kernel", "/nonexistent/vmlinuz-1"], "kernel image"),
        (["bench", "--repetitions", "0"], "must be positive"),
        (["bench", "--scale-mode", "nat,foo"], "unknown forwarding mode 'foo'"),
        (["bench", "--hold", "-1"], "--hold must be >= 0"),
        (["bench", "--failover-fault", "unplug"], "unknown fault 'unplug'"),
        (["bench", "--scale-levels", "0,5000,1000"], "scale levels must rise strictly"),
        (["bench", "--scale-levels", "0,lots"], "--scale-levels: comma-separated whole numbers"),
        (["bench", "--sweep", "0,4"], "--sweep: distinct concurrencies"),
        (["bench", "--conn-tab-bits", "40", "--kernel", "x"], "--conn-tab-bits must be 8..27"),
        (["bench", "--kernel", "sid", "--kernel", "sid"], "a kernel is given twice"),
        (["run", "--protocol", "icmp"], "unknown protocol 'icmp'"),
        (["run", "--topology", "README.md"], "not a .toml declaration or a .py module"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    done = _cli(*args)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lvs-testbed: error:"), done.stderr
    assert message in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


# -- the host side of every command, with the guest runner replaced at its boundary ----------

from testbed.cli import _commands, _dispatch, main  # noqa: E402
from testbed.util import TestbedError  # noqa: E402

TWOS = "conformance/test_schedulers.py::test_twos_distribution_within_bounds"


class FakeGuest:
    """Stands in for the guest: records the command line, writes what a run would."""

    def __init__(self, writes: str | None = "results.json", code: int = 0) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.writes, self.code = writes, code

    def options(self, args, results):  # type: ignore[no-untyped-def]
        return ("opts", results)

    def _boot(self, kind: str, argv: list[str]) -> int:
        self.calls.append((kind, argv))
        batched = argv[:2] == ["test", "--runs"]
        batch = [r["argv"] for r in json.loads(argv[2])] if batched else [argv]
        for one in batch:
            if self.writes and "--run-id" in one:
                results = Path(one[len(one) - 1 - one[::-1].index("--results") + 1])
                run_dir = results / one[one.index("--run-id") + 1]
                written = _MINIMAL[self.writes] | {"exit_status": self.code}
                (run_dir / self.writes).write_text(json.dumps(written))
        return self.code

    def run(self, opts, argv: list[str]) -> int:  # type: ignore[no-untyped-def]
        return self._boot("run", argv)

    def interactive(self, opts, argv: list[str]) -> int:  # type: ignore[no-untyped-def]
        return self._boot("interactive", argv)


_MINIMAL = {
    "results.json": {"run_id": "x", "counts": {"passed": 1}, "timings": {}, "tests": []},
    "bench.json": {"run_id": "x", "timings": {}, "goals": {}},
}


@pytest.fixture
def guest(monkeypatch: pytest.MonkeyPatch) -> FakeGuest:
    fake = FakeGuest()
    monkeypatch.setattr(_dispatch, "GUEST", fake)
    monkeypatch.setattr(_dispatch, "native", lambda args: False)
    monkeypatch.setattr(_commands, "native", lambda args: False)  # test_here asks it too
    monkeypatch.setattr(_dispatch, "commit", lambda: "abc123")
    return fake


def test_run_boots_one_guest_with_the_whole_command_line(guest: FakeGuest, tmp_path: Path) -> None:
    argv = ["run", "-k", "forwarding", "--combinations", "full", "--results", str(tmp_path)]
    assert main(argv) == 0
    ((kind, sent),) = guest.calls
    assert kind == "run"
    assert sent[: len(argv)] == argv  # every option the user gave, none listed by hand
    assert "--run-id" in sent and sent[sent.index("--commit") + 1] == "abc123"
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "report.html").exists() and (run_dir / "summary.txt").exists()
    timings = json.loads((run_dir / "results.json").read_text())["timings"]
    assert "vm_total_s" in timings  # the host merged its own timing


def test_relative_paths_reach_the_guest_absolute(
    guest: FakeGuest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.toml").write_text((REPO / "topologies" / "default.toml").read_text())
    assert main(["run", "--topology", "mine.toml", "--results", "out"]) == 0
    ((_, sent),) = guest.calls
    assert sent[-6:-4] == ["--topology", str(tmp_path / "mine.toml")]
    assert str(tmp_path / "out") in sent and (tmp_path / "out").is_dir()


def test_a_missing_results_directory_is_created(guest: FakeGuest, tmp_path: Path) -> None:
    target = tmp_path / "not" / "yet"
    assert main(["run", "--results", str(target)]) == 0
    assert len(list(target.iterdir())) == 1


def test_a_results_path_that_cannot_be_a_directory_is_one_line(
    guest: FakeGuest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", "--results", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lvs-testbed: error: results directory")
    assert guest.calls == []  # nothing booted


def test_bench_boots_the_guest_and_renders_the_bench(guest: FakeGuest, tmp_path: Path) -> None:
    guest.writes = "bench.json"
    assert main(["bench", "--repetitions", "1", "--results", str(tmp_path)]) == 0
    ((kind, sent),) = guest.calls
    assert kind == "run" and sent[:3] == ["bench", "--repetitions", "1"]
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "bench_summary.txt").exists()


def test_bench_boots_with_the_tables_size_and_unmerged_slabs(
    guest: FakeGuest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    monkeypatch.setattr(guest, "options", lambda args, results: seen.append(args.boot_args))
    guest.writes = "bench.json"
    argv = ["bench", "--kernel", "sid", "--conn-tab-bits", "16", "--results", str(tmp_path)]
    assert main(argv) == 0
    assert seen == [["slab_nomerge", "ip_vs.conn_tab_bits=16"]]


def test_bench_levels_from_connections() -> None:
    from testbed.cli._commands import bench_options
    from testbed.cli._parser import parse

    assert bench_options(parse(["bench", "--connections", "30000"])).scale_levels == (
        0, 10_000, 25_000, 30_000)  # fmt: skip
    opts = bench_options(parse(["bench", "--scale-mode", "dr,direct", "--sweep", "2,8"]))
    assert opts.scale_modes == ("direct", "dr") and opts.sweep == (2, 8)


def test_bench_on_several_kernels_then_side_by_side(
    guest: FakeGuest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    guest.writes = "bench.json"
    argv = ["bench", "--kernel", "6.1.0-57-amd64", "--repetitions", "1", "--kernel", "sid",
            "--results", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    sent = [a for _, a in guest.calls]
    assert [a[a.index("--kernel") + 1] for a in sent] == ["6.1.0-57-amd64", "sid"]
    assert all(a.count("--kernel") == 1 and "--repetitions" in a for a in sent)
    (top,) = tmp_path.iterdir()
    assert sorted(p.name for p in top.iterdir() if p.is_dir()) == ["6.1.0-57-amd64", "sid"]
    assert (top / "bench-kernels.txt").exists() and list((top / "sid").glob("*/bench_summary.txt"))
    assert f"report: {top / 'bench-kernels.html'}" in capsys.readouterr().out


def test_benches_made_apart_are_set_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for kernel in ("6.1", "7.2"):
        run = tmp_path / kernel / "20261207-080000-abcd"
        run.mkdir(parents=True)
        bench = _MINIMAL["bench.json"] | {"environment": {"kernel": kernel}}
        (run / "bench.json").write_text(json.dumps(bench))
    out = tmp_path / "both"
    assert main(["compare", str(tmp_path / "6.1"), str(tmp_path / "7.2"), "--out", str(out)]) == 0
    assert "6.1" in (out / "bench-kernels.txt").read_text().splitlines()[1]
    assert f"report: {out / 'bench-kernels.html'}" in capsys.readouterr().out


def test_lab_attaches_the_terminal(guest: FakeGuest) -> None:
    guest.writes = None
    assert main(["lab", "dr", "--scheduler", "wlc"]) == 0
    assert guest.calls == [("interactive", ["lab", "dr", "--scheduler", "wlc"])]


def test_exit_status_of_the_guest_passes_through(guest: FakeGuest, tmp_path: Path) -> None:
    guest.code = 1
    assert main(["run", "--results", str(tmp_path)]) == 1


def test_test_runs_unit_tests_both_topologies_and_lifecycle(
    guest: FakeGuest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    markers: list[str] = []
    monkeypatch.setattr(_commands, "host_tests", lambda m: markers.append(m) or 0)
    assert main(["test", "--results", str(tmp_path), "--smoke-kernel", "none"]) == 0
    assert markers == ["not vm", "vm"]
    ((kind, sent),) = guest.calls  # one guest boot for both conformance runs
    assert kind == "run" and sent[:2] == ["test", "--runs"]
    runs = json.loads(sent[2])
    assert len(runs) == len(_commands.TEST_RUNS) == 3
    assert all(r["argv"][0] == "run" and "--run-id" in r["argv"] for r in runs)
    assert "--topology" in runs[1]["argv"] and "wide" in runs[1]["argv"]
    # wide and the labs (on a cluster of their own), both beside the first
    assert [r["alongside"] for r in runs] == [False, True, True]
    keywords = [r["argv"][r["argv"].index("-k") + 1] for r in runs]
    assert keywords[0] == "not test_labs" and keywords[2] == "test_labs"
    assert not any("--smoke-kernel" in r["argv"] for r in runs)  # test's own option
    assert len(list(tmp_path.iterdir())) == 3  # one results directory per run
    assert all((d / "report.html").exists() for d in tmp_path.iterdir())


def test_test_leaves_out_the_labs_run_when_the_profile_selects_no_lab(
    guest: FakeGuest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_commands, "host_tests", lambda m: 0)
    argv = ["test", "--results", str(tmp_path), "--smoke-kernel", "none", "--profile", "smoke"]
    assert main(argv) == 0
    ((_, sent),) = guest.calls
    runs = json.loads(sent[2])
    assert [r["alongside"] for r in runs] == [False, True]  # no run of an empty selection
    assert not any("test_labs" in r["argv"] for r in runs)


class SmokeGuest(FakeGuest):
    """The full run on the default kernel, the smoke profile (a subset) on the matrix's
    kernels; twos exists on trixie only, test_y fails on the kernel named ``odd``."""

    odd = ""

    def _boot(self, kind: str, argv: list[str]) -> int:
        self.calls.append((kind, argv))
        batch = [r["argv"] for r in json.loads(argv[2])] if argv[1] == "--runs" else [argv]
        for run in batch:
            kernel = run[run.index("--kernel") + 1] if "--kernel" in run else "6.1"
            profile = run[run.index("--profile") + 1] if "--profile" in run else "full"
            outcomes = {
                "conformance/test_schedulers.py::test_rr": "passed",
                TWOS: "passed" if kernel == "pinned:trixie" else "skipped",
                "conformance/test_x.py::test_y": "failed" if kernel == self.odd else "passed",
            }
            if profile == "full":
                outcomes["conformance/test_only_in_full.py::test_z"] = "passed"
            results = Path(run[len(run) - 1 - run[::-1].index("--results") + 1])
            data = {"run_id": "x", "counts": {}, "timings": {}, "profile": profile,
                    "exit_status": int(kernel == self.odd),
                    "tests": [{"nodeid": n, "outcome": o, "duration_s": 1.0}
                              for n, o in outcomes.items()],
                    "environment": {"kernel": kernel,
                                    "features": {"twos": kernel == "pinned:trixie"}}}  # fmt: skip
            (results / run[run.index("--run-id") + 1] / "results.json").write_text(json.dumps(data))
        return 0


def _test_with(fake: SmokeGuest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> int:
    """`lvs-testbed test` with ``fake`` for the guest and the host's tests passing."""
    for module in (_dispatch, _commands):
        monkeypatch.setattr(module, "native", lambda args: False)
    monkeypatch.setattr(_dispatch, "GUEST", fake)
    monkeypatch.setattr(_commands, "host_tests", lambda m: 0)
    return main(["test", "--results", str(tmp_path)])


@pytest.mark.parametrize(("odd", "code"), [("", 0), ("pinned:sid", 1)])
def test_test_ends_with_the_smoke_profile_on_other_kernels_and_their_matrix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, odd: str, code: int
) -> None:
    """The smoke runs are compared with the full run on the tests all of them ran; a
    difference no ledger entry explains (a test failing on sid alone) fails `test`."""
    fake = SmokeGuest()
    fake.odd = odd
    assert _test_with(fake, monkeypatch, tmp_path) == code
    legs = [a for _, a in fake.calls[1:]]
    assert sorted(a[a.index("--kernel") + 1] for a in legs) == sorted(_commands.SMOKE_KERNELS)
    assert all(a[a.index("--profile") + 1] == "smoke" for a in legs)
    [top] = tmp_path.glob("*/kernels")  # the full run's directory holds its matrix
    comparison = json.loads((top / "comparison.json").read_text())
    assert comparison["profiles"] == ["full", "smoke"] and comparison["not_compared"] == 1
    [twos] = [d for d in comparison["differences"] if "twos" in d["nodeid"]]
    assert twos["explained_by"] == "twos"
    assert comparison["unexplained"] == (["conformance/test_x.py::test_y"] if odd else [])


def _host_cpus(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)))


@pytest.mark.parametrize(("host_cpus", "cpus"), [(1, 1), (2, 1), (8, 2)])
def test_smoke_runs_boot_side_by_side_one_host_cpu_each_at_least(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    host_cpus: int, cpus: int,
) -> None:  # fmt: skip
    """As many guests at once as the host has CPUs (two kernels here), none with more
    CPUs than its share; each run's output, text and the guest's raw bytes, is kept
    apart and shown whole."""
    _host_cpus(monkeypatch, host_cpus)
    fake = SmokeGuest()
    real_boot = fake._boot
    both_up = threading.Barrier(2, timeout=10)  # passes only if the two guests overlap

    def boot(kind: str, argv: list[str]) -> int:
        if "--kernel" in argv:  # a smoke leg: what its guest prints, line by line
            if host_cpus > 1:
                both_up.wait()
            kernel = argv[argv.index("--kernel") + 1]
            for n in range(3):
                print(f"{kernel} says {n}", flush=True)
                sys.stdout.buffer.write(f"{kernel} boots {n}\n".encode())
                sys.stdout.buffer.flush()
                time.sleep(0.01)
        return real_boot(kind, argv)

    fake._boot = boot  # type: ignore[method-assign]
    assert _test_with(fake, monkeypatch, tmp_path) == 0
    legs = [a for _, a in fake.calls[1:]]
    assert all(f"--cpus={cpus}" in a for a in legs)
    assert "--cpus" not in " ".join(fake.calls[0][1])  # the main run keeps its two
    out = capsys.readouterr().out
    for kernel in _commands.SMOKE_KERNELS:
        said = "\n".join(f"{kernel} {v} {n}" for n in range(3) for v in ("says", "boots"))
        assert said in out  # whole, not interleaved with the other's
    [top] = tmp_path.glob("*/kernels")
    kept = [p.name for p in top.glob("*/console.txt")]
    assert kept == (["console.txt"] * 2 if host_cpus > 1 else [])


def test_ctrl_c_beside_runs_stops_their_guests_and_ends_130(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Ctrl-C reaches the main thread only: it ends the guests the other threads wait
    for (stop_guests), and `test` exits 130 without waiting out their runs."""
    import _thread

    _host_cpus(monkeypatch, 2)
    stopped = threading.Event()
    monkeypatch.setattr(_commands, "stop_guests", stopped.set)
    fake = SmokeGuest()
    real_boot = fake._boot

    def boot(kind: str, argv: list[str]) -> int:
        if "pinned:trixie" in argv:
            _thread.interrupt_main()
        elif "pinned:sid" in argv:  # a guest still running, until stopped
            assert stopped.wait(timeout=30), "the interrupt did not stop the other guest"
        return real_boot(kind, argv)

    fake._boot = boot  # type: ignore[method-assign]
    # a shell's background job starts with SIGINT ignored, and then interrupt_main
    # does nothing: Ctrl-C's own handler, for this test
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        started = time.monotonic()
        assert _test_with(fake, monkeypatch, tmp_path) == 130
    finally:
        signal.signal(signal.SIGINT, before)
    assert stopped.is_set() and time.monotonic() - started < 30


def test_stopped_guests_are_killed_and_no_more_boot(monkeypatch: pytest.MonkeyPatch) -> None:
    """stop_guests signals every running guest, then makes sure each is gone; a thread
    that would boot another after it gets a one-line error instead."""
    from testbed.guest import _vm

    killed: list[object] = []
    monkeypatch.setattr(_vm, "_stopped", threading.Event())
    monkeypatch.setattr(_vm.os, "killpg", lambda pid, sig: killed.append(("told", sig)))
    monkeypatch.setattr(_vm, "_kill_group", killed.append)
    monkeypatch.setattr(_vm.subprocess, "Popen", lambda *a, **k: pytest.fail("booted"))
    guest = type("Proc", (), {"pid": 1})()
    monkeypatch.setattr(_vm, "_running", {guest})
    _vm.stop_guests()
    assert killed == [("told", signal.SIGTERM), guest] and _vm.guests_stopped()
    with pytest.raises(TestbedError, match="no more guests"):
        _vm.run_in_guest(None, ["run"])  # type: ignore[arg-type]


def test_guest_cpus_are_checked_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--cpus", "0"])
    assert "a guest needs a whole number of CPUs, 1 or more: 0" in capsys.readouterr().err


def _smoke_runs(fake: SmokeGuest, kernel: str) -> list[list[str]]:
    return [a for _, a in fake.calls[1:] if kernel in a]


def test_a_smoke_run_that_ran_nothing_fails_the_matrix_after_a_second_try(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty leg would leave no test in common, and nothing to differ. It is tried
    once more, with the guest kernel's console shown; the other kernels are still
    compared."""
    fake = SmokeGuest()
    real_boot = fake._boot

    def boot(kind: str, argv: list[str]) -> int:
        code = real_boot(kind, argv)
        if "pinned:sid" in argv:  # collection failed: no tests, pytest's exit status 2
            done = Path(argv[argv.index("--results") + 1]) / argv[argv.index("--run-id") + 1]
            data = json.loads((done / "results.json").read_text()) | {"tests": [], "exit_status": 2}
            (done / "results.json").write_text(json.dumps(data))
        return code

    fake._boot = boot  # type: ignore[method-assign]
    assert _test_with(fake, monkeypatch, tmp_path) == 1
    out = capsys.readouterr().out
    assert "the run on pinned:sid did not get going (exit status 2, 0 tests" in out
    assert "no run on pinned:sid: those kernels are not compared" in out
    assert ["--console" in a for a in _smoke_runs(fake, "pinned:sid")] == [False, True]
    [top] = tmp_path.glob("*/kernels")
    assert "pinned:trixie (smoke)" in json.loads((top / "comparison.json").read_text())["kernels"]


def test_a_guest_that_fails_once_before_writing_anything_gets_a_second_try(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A boot that fails under emulation without a word (vng sends the kernel's console
    to /dev/null): said with the guest's exit status, then booted again, console shown."""
    fake = SmokeGuest()
    real_boot = fake._boot

    def boot(kind: str, argv: list[str]) -> int:
        if "pinned:trixie" in argv and len(_smoke_runs(fake, "pinned:trixie")) == 0:
            fake.calls.append((kind, argv))
            return 1
        return real_boot(kind, argv)

    fake._boot = boot  # type: ignore[method-assign]
    assert _test_with(fake, monkeypatch, tmp_path) == 0
    out = capsys.readouterr().out
    assert "the guest ended with exit status 1 before the run wrote anything" in out
    assert "did not get going (exit status 1, 0 tests" in out
    assert "once more, with the kernel's console shown" in out
    assert ["--console" in a for a in _smoke_runs(fake, "pinned:trixie")] == [False, True]


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (["--smoke-kernel", "none", "--smoke-kernel", "sid"], "give it alone"),
        (["--smoke-kernel", "sid", "--smoke-kernel=sid"], "given twice"),
        (["--smoke", "sid"], "unrecognized arguments: --smoke"),  # no abbreviations
    ],
)
def test_smoke_kernels_are_checked_in_one_line(given: list[str], says: str) -> None:
    done = _cli("test", *given)
    assert done.returncode == 2 and says in done.stderr, done


def test_a_failed_run_of_a_batch_fails_test_and_is_named(
    guest: FakeGuest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(_commands, "host_tests", lambda m: 0)
    guest.code = 1
    assert main(["test", "--results", str(tmp_path)]) == 1
    failed = capsys.readouterr().out.splitlines()[-1]
    assert failed.startswith("[lvs-testbed] FAILED: run") and "wide" in failed


def test_a_batch_run_that_wrote_nothing_fails(
    guest: FakeGuest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_commands, "host_tests", lambda m: 0)
    guest.writes = None  # the guest died before any run wrote its results
    assert main(["test", "--results", str(tmp_path)]) == 1


def test_test_fails_when_any_part_fails(
    guest: FakeGuest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_commands, "host_tests", lambda m: 1 if m == "vm" else 0)
    assert main(["test", "--results", str(tmp_path)]) == 1


def test_clean_needs_no_guest(monkeypatch: pytest.MonkeyPatch, guest: FakeGuest) -> None:
    import testbed.cluster

    monkeypatch.setattr(_commands.os, "geteuid", lambda: 0)
    monkeypatch.setattr(testbed.cluster, "clean_guests", lambda: ["guest 1"])
    monkeypatch.setattr(testbed.cluster, "clean_native", lambda: [])
    assert main(["clean"]) == 0 and guest.calls == []


def test_in_the_guest_the_command_runs_here(
    monkeypatch: pytest.MonkeyPatch, guest: FakeGuest, tmp_path: Path
) -> None:
    """Inside the guest (or natively) the same command line runs the suite directly."""
    ran: list[object] = []
    monkeypatch.setattr(_dispatch, "native", lambda args: True)
    fake = _dispatch.Command(name="run", here=lambda a, d: ran.append(d) or 0,
                             writes_results=True)  # fmt: skip
    monkeypatch.setitem(_commands.COMMANDS, "run", fake)
    monkeypatch.setattr("testbed.cli.COMMANDS", _commands.COMMANDS)
    assert main(["run", "--results", str(tmp_path), "--run-id", "r1"]) == 0
    assert ran == [tmp_path / "r1"] and guest.calls == []


# -- matrix -------------------------------------------------------------------------------------


class KernelGuest(FakeGuest):
    """A guest whose runs differ by kernel: twos exists on the second only."""

    def _boot(self, kind: str, argv: list[str]) -> int:
        self.calls.append((kind, argv))
        kernel = argv[argv.index("--kernel") + 1]
        results = Path(argv[len(argv) - 1 - argv[::-1].index("--results") + 1])
        has_twos = kernel == "trixie"
        tests = [
            {"nodeid": "conformance/test_schedulers.py::test_rr", "outcome": "passed"},
            {"nodeid": "conformance/test_schedulers.py::test_twos_distribution_within_bounds",
             "outcome": "passed" if has_twos else "skipped"},
            {"nodeid": "conformance/test_x.py::test_y",
             "outcome": "failed" if kernel == self.odd else "passed"},
        ]  # fmt: skip
        for t in tests:
            t["duration_s"] = 1.0
        data = {"run_id": "x", "counts": {}, "timings": {"suite_s": 1.0}, "tests": tests,
                "exit_status": int(kernel == self.odd),
                "environment": {"kernel": kernel, "features": {"twos": has_twos}}}  # fmt: skip
        (results / argv[argv.index("--run-id") + 1] / "results.json").write_text(json.dumps(data))
        return 0

    odd = ""


@pytest.mark.parametrize(("odd", "code"), [("", 0), ("trixie", 1)])
def test_matrix_explains_differences_with_the_ledger(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, odd: str, code: int
) -> None:
    fake = KernelGuest()
    fake.odd = odd
    monkeypatch.setattr(_dispatch, "GUEST", fake)
    monkeypatch.setattr(_dispatch, "native", lambda args: False)
    argv = ["matrix", "--kernel", "6.1", "--kernel", "trixie", "-k", "sched",
            "--results", str(tmp_path)]  # fmt: skip
    assert main(argv) == code
    assert [a[a.index("--kernel") + 1] for _, a in fake.calls] == ["6.1", "trixie"]
    assert all(a[a.index("-k") + 1] == "sched" for _, a in fake.calls)
    (top,) = tmp_path.iterdir()
    comparison = json.loads((top / "comparison.json").read_text())
    [twos] = [d for d in comparison["differences"] if "twos" in d["nodeid"]]
    assert twos["explained_by"] == "twos" and not comparison["stale"]
    assert comparison["unexplained"] == (["conformance/test_x.py::test_y"] if odd else [])
    assert (top / "matrix.html").exists() and "twos" in (top / "matrix.txt").read_text()


def test_matrix_needs_two_kernels() -> None:
    done = _cli("matrix", "--kernel", "trixie")
    assert done.returncode == 2 and "give --kernel at least twice" in done.stderr


# -- compare ------------------------------------------------------------------------------------


def _run(where: Path, run_id: str, outcomes: dict[str, str], *, exit_status: int = 0,
         twos: bool = False, kernel: str = "6.1") -> Path:  # fmt: skip
    tests = [{"nodeid": n, "outcome": o, "duration_s": 1.0} for n, o in outcomes.items()]
    data = {"run_id": run_id, "tests": tests, "exit_status": exit_status, "timings": {},
            "environment": {"kernel": kernel, "features": {"twos": twos}}}  # fmt: skip
    (where / run_id).mkdir(parents=True)
    (where / run_id / "results.json").write_text(json.dumps(data))
    return where / run_id


@pytest.mark.parametrize(
    ("candidate", "code", "says"),
    [
        ({"t::a": "passed", "t::b": "failed"}, 0, "compare: good"),  # b fails in both
        ({"t::a": "failed", "t::b": "failed"}, 1, "regressed: t::a"),
        ({"t::a": "error", "t::b": "passed"}, 1, "regressed: t::a"),
        ({"t::a": "passed", "t::b": "passed", TWOS: "passed"}, 0, "ledger: twos"),
    ],
)
def test_compare_is_one_bisection_step(
    tmp_path: Path, candidate: dict[str, str], code: int, says: str
) -> None:
    good = _run(tmp_path / "good", "20261206-100000-aaaa",
                {"t::a": "passed", "t::b": "failed", TWOS: "skipped"})  # fmt: skip
    cand = _run(tmp_path / "cand", "20261206-110000-bbbb", candidate, twos=TWOS in candidate,
                exit_status=1 if "failed" in candidate.values() else 0)  # fmt: skip
    done = _cli("compare", str(good), str(cand.parent))
    assert done.returncode == code, done
    assert says in done.stdout


def test_compare_cannot_judge_a_run_that_never_got_going(tmp_path: Path) -> None:
    good = _run(tmp_path / "good", "20261206-100000-aaaa", {"t::a": "passed"})
    _run(tmp_path / "cand", "20261206-100000-aaaa", {"t::a": "passed"})
    (tmp_path / "cand" / "20261206-120000-cccc").mkdir()  # the newest: no results.json
    assert _cli("compare", str(good), str(tmp_path / "cand")).returncode == 125
    interrupted = _run(tmp_path / "int", "20261206-130000-dddd", {"t::a": "passed"},
                       exit_status=2)  # fmt: skip
    done = _cli("compare", str(good), str(interrupted))
    assert done.returncode == 125 and "cannot be judged" in done.stdout
    assert _cli("compare", str(tmp_path / "nothing"), str(good)).returncode == 2


def test_compare_merges_runs_made_on_other_machines(tmp_path: Path) -> None:
    runs = [_run(tmp_path / k, "20261206-100000-aaaa", {"t::a": "passed", TWOS: o},
                 twos=o == "passed", kernel=k)
            for k, o in (("6.1", "skipped"), ("6.12", "passed"), ("7.2", "passed"))]  # fmt: skip
    out = tmp_path / "matrix"
    done = _cli("compare", *map(str, runs), "--out", str(out))
    assert done.returncode == 0, done
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["kernels"] == ["6.1", "6.12", "7.2"] and not comparison["unexplained"]


# -- kernel CI ----------------------------------------------------------------------------------


def test_ktap_ends_the_output_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from testbed.cli import finish

    run_dir = _run(tmp_path, "20261206-100000-aaaa", {"conformance/test_a.py::test_b": "passed"})
    finish(run_dir, {}, ktap=True)
    out = capsys.readouterr().out
    ktap = out[out.index("KTAP version 1") :].splitlines()
    assert ktap[-1] == "ok 1 test_a" and "  ok 1 test_b" in ktap


def test_the_kselftest_entry_skips_without_a_testbed(tmp_path: Path) -> None:
    script = REPO / "conformance" / "kselftest" / "lvs_conformance.sh"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LVS_TESTBED": str(tmp_path)}
    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 4 and done.stdout.startswith("SKIP: "), done
    settings = (script.parent / "settings").read_text()
    assert int(settings.split("timeout=")[1]) > 45  # the runner's default would kill it


def test_the_matrix_sets_observed_figures_side_by_side(tmp_path: Path) -> None:
    runs = []
    for kernel, takeover in (("6.1", 0.62), ("7.2", 38.9)):
        run = _run(tmp_path / kernel, "20261206-100000-aaaa", {"t::a": "passed"}, kernel=kernel)
        data = json.loads((run / "results.json").read_text())
        data["observations"] = [{"kind": "failover", "key": "heartbeat-cut", "takeover_s": takeover,
                                 "fault": "cut"}]  # fmt: skip
        (run / "results.json").write_text(json.dumps(data))
        runs.append(run)
    assert _cli("compare", *map(str, runs), "--out", str(tmp_path / "m")).returncode == 0
    page = (tmp_path / "m" / "matrix.html").read_text()
    assert "failover heartbeat-cut takeover_s</td><td>0.62</td><td>38.9</td>" in page


def test_in_the_guest_a_batch_runs_each_command_and_fails_if_any_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LVS_TESTBED_GUEST_BOOT_S", "1")  # so the undo removes it again
    monkeypatch.delenv("LVS_TESTBED_GUEST_BOOT_S")
    ok = {"argv": ["lab", "list"]}
    bad = {"argv": ["lab", "no-such-lab", "--solution"]}
    assert main(["test", "--runs", json.dumps([ok, ok])]) == 0
    assert main(["test", "--runs", json.dumps([bad, ok])]) == 1
    beside = {"argv": [*bad["argv"], "--results", str(tmp_path), "--run-id", "x"],
              "alongside": True}  # fmt: skip
    (tmp_path / "x").mkdir()
    assert main(["test", "--runs", json.dumps([ok, beside])]) == 1
    assert "lvs-testbed: error" in (tmp_path / "x" / "console.txt").read_text()  # its output
    assert float(_commands.os.environ["LVS_TESTBED_GUEST_BOOT_S"]) > 0  # handed on


def test_in_the_guest_runs_alongside_hold_the_others_timed_tests_back(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The runs alongside start first, each on bridges of its own, and hold the quiet
    lock until both have ended; the others see the lock's path; their consoles come
    after theirs."""
    monkeypatch.delenv("LVS_TESTBED_QUIET_LOCK", raising=False)
    started: list[tuple[list[str], dict[str, str]]] = []
    ended: list[str] = []
    real_popen = _commands.subprocess.Popen

    def in_turn(cmd: list[str], **kw: object):  # type: ignore[no-untyped-def]
        env = kw["env"]
        started.append((cmd[3:], env))  # type: ignore[arg-type]
        lock = open(env["LVS_TESTBED_QUIET_LOCK"])  # type: ignore[index]  # noqa: SIM115
        with lock:  # held by the runs alongside, which sleep a second and two
            with pytest.raises(BlockingIOError):
                _commands.fcntl.flock(lock, _commands.fcntl.LOCK_SH | _commands.fcntl.LOCK_NB)
            _commands.fcntl.flock(lock, _commands.fcntl.LOCK_SH)  # until they end
        ended.append((tmp_path / "l" / "console.txt").read_text())  # the slower one too
        return _commands.subprocess.CompletedProcess(cmd, 0)

    def beside(cmd: list[str], **kw: object):  # type: ignore[no-untyped-def]
        started.append((cmd[3:], kw["env"]))  # type: ignore[arg-type]
        wait = 2 if "labs" in cmd else 1
        return real_popen(["sh", "-c", f"sleep {wait}; echo from-{cmd[4]}"], stdout=kw["stdout"])

    monkeypatch.setattr(_commands.subprocess, "run", in_turn)
    monkeypatch.setattr(_commands.subprocess, "Popen", beside)
    wide = ["run", "wide", "--results", str(tmp_path), "--run-id", "w"]
    labs = ["run", "labs", "--results", str(tmp_path), "--run-id", "l"]
    (tmp_path / "w").mkdir()
    (tmp_path / "l").mkdir()
    runs = [{"argv": ["run"], "alongside": False}, {"argv": wide, "alongside": True},
            {"argv": labs, "alongside": True}]  # fmt: skip
    assert main(["test", "--runs", json.dumps(runs)]) == 0
    (first, first_env), (second, second_env), (third, third_env) = started
    assert (first, second, third) == (wide, labs, ["run"])  # those alongside start first
    assert (tmp_path / "w" / "console.txt").read_text() == "from-wide\n"
    assert ended == ["from-labs\n"]  # the lock was held until the slower one ended
    assert third_env.get("LVS_TESTBED_PREFIX") is None
    prefixes = [first_env["LVS_TESTBED_PREFIX"], second_env["LVS_TESTBED_PREFIX"]]
    assert prefixes == list(_commands.ALONGSIDE_PREFIXES)  # bridges of their own
    out = capsys.readouterr().out
    after = out.index("lvs-testbed run\n")
    assert after < out.index("(ran alongside)") < out.index("from-wide") < out.index("from-labs")


def test_a_forked_child_ends_on_sigterm_without_unwinding_its_parent() -> None:
    """pyroute2 forks to make a netns socket and SIGTERMs the child: the child must not
    run the parent's clean-up (it once tore down the parent's cluster)."""
    import os
    import signal as sig
    import time

    saved = {s: sig.getsignal(s) for s in (sig.SIGTERM, sig.SIGHUP)}
    _dispatch.install_signal_handlers()
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: sleeps in a try whose finally would report unwinding
            os.close(read)
            try:
                time.sleep(30)
            finally:
                os.write(write, b"unwound")
            os._exit(0)
        os.close(write)
        time.sleep(0.2)
        os.kill(pid, sig.SIGTERM)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 128 + sig.SIGTERM
        assert os.read(read, 100) == b""  # no finally: ran in the child
        os.close(read)
    finally:
        for s, handler in saved.items():
            sig.signal(s, handler)


def test_runs_of_other_profiles_compare_what_each_profile_ran() -> None:
    """Full beside two smoke runs: a test smoke never runs is left out; one smoke ran on
    trixie but not on sid is absent there, a difference."""
    from testbed.kernel import load_ledger
    from testbed.report import compare_runs

    def ran(profile: str, *names: str) -> dict[str, object]:
        return {"profile": profile,
                "tests": [{"nodeid": n, "outcome": "passed"} for n in names]}  # fmt: skip

    comparison = compare_runs(
        {"6.1": ran("full", "t::a", "t::b", "t::only_full"), "trixie": ran("smoke", "t::a", "t::b"),
         "sid": ran("smoke", "t::a")}, load_ledger())  # fmt: skip
    assert comparison.not_compared == 1 and sorted(comparison.outcomes) == ["t::a", "t::b"]
    assert [d.outcomes["sid"] for d in comparison.unexplained] == ["absent"]
