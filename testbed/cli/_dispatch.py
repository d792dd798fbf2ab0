"""Where a command runs: natively when this kernel has IPVS, else in a guest that has it.

One decision for every command that needs IPVS. A guest gets the whole
command line as the user typed it (host paths made absolute, the run id and
commit appended), so a new option reaches the guest without being listed
anywhere; afterwards the host renders the results once, in ``finish``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..guest import (
    GuestOptions,
    choose_emulation,
    in_guest,
    resolve_kernel,
    run_in_guest,
    run_interactive,
)
from ..kernel import running_kernel_has_ipvs
from ..util import REPO, TestbedError
from ._parser import PATH_OPTIONS

CACHE = REPO / ".cache"


def say(msg: str) -> None:
    print(f"[lvs-testbed] {msg}", flush=True)


# runs side by side (threads): the kernel cache and matplotlib's figures are shared
_one_at_a_time = threading.Lock()


class GuestRunner:
    """The host side of a guest run: the seam unit tests replace."""

    def options(self, args: argparse.Namespace, results: Path | None) -> GuestOptions:
        if os.geteuid() != 0:
            raise TestbedError("the testbed needs root (Mininet and the guest both do)")
        with _one_at_a_time:  # runs side by side may share a release's apt cache
            kernel = resolve_kernel(args.kernel, cache=CACHE / "kernels")
            emulation = choose_emulation(args.emulation, kernel, CACHE)
        extra = ()
        if results is not None and not results.resolve().is_relative_to(REPO):
            extra = (results.resolve(),)
        label = "KVM" if emulation == "kvm" else "TCG software emulation (slow: expect minutes)"
        say(f"this kernel lacks IPVS: booting guest kernel {kernel.version} ({kernel.origin}) "
            f"with {label}")  # fmt: skip
        return GuestOptions(
            kernel=kernel, checkout=REPO, emulation=emulation, memory=args.memory, extra_rw=extra,
            cpus=getattr(args, "cpus", None) or GuestOptions.cpus,
            boot_args=tuple(getattr(args, "boot_args", ())),
            console=getattr(args, "console", False),
        )  # fmt: skip

    def run(self, opts: GuestOptions, argv: list[str]) -> int:
        return run_in_guest(opts, argv)

    def interactive(self, opts: GuestOptions, argv: list[str]) -> int:
        return run_interactive(opts, argv)


GUEST = GuestRunner()


@dataclass(frozen=True, kw_only=True)
class Command:
    """One subcommand: how its input is checked and what it does where IPVS is."""

    name: str
    here: Callable[[argparse.Namespace, Path | None], int]  # natively or inside the guest
    check: Callable[[argparse.Namespace], None] = lambda args: None  # bad input: one line
    # either may depend on the arguments (``lab list`` needs no kernel, ``lab x --check``
    # no terminal)
    needs_ipvs: bool | Callable[[argparse.Namespace], bool] = True
    writes_results: bool = False  # a results/<run-id>/ directory
    interactive: bool | Callable[[argparse.Namespace], bool] = False  # the terminal attached


def native(args: argparse.Namespace) -> bool:
    """True if this process uses kernel IPVS directly (``--kernel`` always means a guest)."""
    if in_guest():
        return True
    return not getattr(args, "kernel", None) and os.geteuid() == 0 and running_kernel_has_ipvs()


def commit() -> str:
    """HEAD of the checkout, marked +dirty when it has uncommitted changes."""

    def git(*a: str) -> str:
        try:
            done = subprocess.run(["git", "-c", f"safe.directory={REPO}", "-C", str(REPO), *a],
                                  capture_output=True, text=True, check=False)  # fmt: skip
        except FileNotFoundError:  # no git (a VM with an rsynced checkout)
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def results_dir(args: argparse.Namespace) -> Path:
    """The results directory, created if it does not exist yet; one that cannot be (a
    file in the way, no permission) is refused in one line."""
    results = Path(args.results)
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TestbedError(f"results directory {results}: {exc.strerror}") from None
    if not results.is_dir():
        raise TestbedError(f"results directory {results}: not a directory")
    return results


def new_run_dir(results: Path, args: argparse.Namespace) -> Path:
    """results/<run-id>/ (the id given, or a new one, kept in ``args`` for the guest)."""
    if not args.run_id:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-")
        args.run_id = stamp + secrets.token_hex(2)
    run_dir = results / args.run_id
    run_dir.mkdir(exist_ok=True)
    return run_dir


def guest_argv(argv: list[str], args: argparse.Namespace) -> list[str]:
    """The user's command line for the guest: host paths absolute, run id and commit added
    (argparse keeps the last of a repeated option)."""
    extra: list[str] = []
    for dest in PATH_OPTIONS:
        value = getattr(args, dest, None)
        if value and Path(value).exists():
            extra += [f"--{dest}", str(Path(value).resolve())]
    if getattr(args, "run_id", None):
        extra += ["--run-id", args.run_id, "--commit", args.commit or commit()]
    return [*argv, *extra]


def _per_args(flag: bool | Callable[[argparse.Namespace], bool], args: argparse.Namespace) -> bool:
    return flag(args) if callable(flag) else flag


def dispatch(command: Command, args: argparse.Namespace, argv: list[str]) -> int:
    """Check the input, then run the command natively or in a guest; render results."""
    command.check(args)
    results = results_dir(args) if command.writes_results else None
    if not _per_args(command.needs_ipvs, args) or native(args):
        run_dir = new_run_dir(results, args) if results else None
        code = command.here(args, run_dir)
        if run_dir is not None and not in_guest():
            finish(run_dir, {}, ktap=getattr(args, "ktap", False))
        return code
    opts = GUEST.options(args, results)  # the kernel chosen (maybe fetched) before a run dir
    run_dir = new_run_dir(results, args) if results else None
    started = time.monotonic()
    boot = GUEST.interactive if _per_args(command.interactive, args) else GUEST.run
    code = boot(opts, guest_argv(argv, args))
    if run_dir is not None:
        finish(run_dir, {"vm_total_s": time.monotonic() - started},
               ktap=getattr(args, "ktap", False))  # fmt: skip
    quiet = not getattr(args, "console", False)  # a kernel that said nothing
    if code and quiet and run_dir is not None and not any(run_dir.glob("*.json")):
        say(f"the guest ended with exit status {code} before the run wrote anything; "
            f"--console shows what its kernel said")  # fmt: skip
    return code


def dispatch_together(
    command: Command,
    runs: list[tuple[argparse.Namespace, list[str]]],
    batch: Callable[[list[list[str]]], list[str]],
) -> list[int]:
    """Several runs of a results-writing command in one guest boot (under emulation the
    boot is a short run's largest part): ``batch`` turns their command lines into the
    one the guest runs. Each run keeps its own run dir, report and exit status."""
    for args, _ in runs:
        command.check(args)
    dirs = [results_dir(args) for args, _ in runs]
    opts = GUEST.options(runs[0][0], dirs[0])
    run_dirs = [new_run_dir(results, args) for results, (args, _) in zip(dirs, runs, strict=True)]
    started = time.monotonic()
    code = GUEST.run(opts, batch([guest_argv(argv, args) for args, argv in runs]))
    vm_total = time.monotonic() - started  # the guest's, not the reports' rendering
    codes = []
    for run_dir in run_dirs:
        finish(run_dir, {"vm_total_s": vm_total})
        codes.append(_exit_status(run_dir))
    # a guest that failed beyond what the runs wrote (a crash between them)
    return [code] * len(codes) if code and not any(codes) else codes


def _exit_status(run_dir: Path) -> int:
    """pytest's exit status as the run wrote it (none written: the run failed)."""
    try:
        return int(json.loads((run_dir / "results.json").read_text())["exit_status"])
    except (OSError, ValueError, KeyError, TypeError):
        return 1


def finish(run_dir: Path, host_timings: dict[str, float], *, ktap: bool = False) -> None:
    """Merge host-side timings into what the run wrote, render summaries and the report;
    with ``ktap``, end with the results as KTAP (kernel CI reads from its version line)."""
    with _one_at_a_time:
        _finish(run_dir, host_timings, ktap=ktap)


def _finish(run_dir: Path, host_timings: dict[str, float], *, ktap: bool) -> None:
    from ..report import bench_summary, render

    written = [f for f in (run_dir / "results.json", run_dir / "bench.json") if f.exists()]
    if not written:
        side_by_side = run_dir / "bench-kernels.html"  # a bench on several kernels
        say(f"report: {side_by_side}" if side_by_side.exists()
            else f"no results were written to {run_dir}")  # fmt: skip
        return
    for path in written:
        data = json.loads(path.read_text())
        data.setdefault("timings", {}).update({k: round(v, 2) for k, v in host_timings.items()})
        path.write_text(json.dumps(data, indent=2))
    report = render(run_dir)
    if (run_dir / "results.json").exists():
        print((run_dir / "summary.txt").read_text(), end="", flush=True)
    if (run_dir / "bench.json").exists():
        print(bench_summary(json.loads((run_dir / "bench.json").read_text())), end="", flush=True)
    say(f"report: {report}")
    if ktap and (run_dir / "results.ktap").exists():
        print((run_dir / "results.ktap").read_text(), end="", flush=True)


def install_signal_handlers(*, exit_instead: bool = False) -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so every finally: cleans up.

    ``exit_instead``: raise SystemExit, for Mininet's CLI, which swallows
    KeyboardInterrupt (there Ctrl-C interrupts a command, not the lab).
    """

    installed_by = os.getpid()

    def interrupt(signum: int, _frame: Any) -> None:
        # a library's forked child (pyroute2 makes netns sockets in one) inherits this
        # handler: there, unwinding would run this process's finally: clauses, tear
        # down its cluster and keep its parent waiting; the child just ends
        if os.getpid() != installed_by:
            os._exit(128 + signum)
        if exit_instead:
            raise SystemExit(128 + signum)
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
