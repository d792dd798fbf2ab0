"""Run a testbed command inside a virtme-ng guest that has kernel IPVS.

The guest shares the host's root file system read-only and the checkout
read-write, so the same virtualenv and code run inside and results come back.
The host side only boots, streams output and passes the exit status through;
Ctrl-C or SIGTERM kills the whole guest process group, so no qemu survives.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..util import TestbedError
from ._image import GuestKernel

GUEST_ENV = "LVS_TESTBED_GUEST"  # set inside the guest: "kvm" or "tcg"
BOOT_ENV = "LVS_TESTBED_GUEST_BOOT_S"  # runs batched in one guest: its boot time
# a run beside another holds this lock file; the other's tests that measure time wait
QUIET_ENV = "LVS_TESTBED_QUIET_LOCK"
GUEST_NAME = "lvs-testbed"  # qemu -name: how `clean` recognises our guests
EXEC_INLINE_MAX = 500  # longer guest commands go through a file (see vng_command)
KVM_PROBE_SECONDS = 12


@dataclass(frozen=True, kw_only=True)
class GuestOptions:
    kernel: GuestKernel
    checkout: Path
    emulation: str  # "kvm" or "tcg"
    cpus: int = 2
    memory: str = "4G"
    extra_rw: tuple[Path, ...] = ()
    boot_args: tuple[str, ...] = ()  # added to the kernel's command line
    console: bool = False  # the kernel's console shown (vng sends it to /dev/null)


def in_guest() -> str | None:
    """The emulation mode if this process runs inside our guest, else None."""
    return os.environ.get(GUEST_ENV)


def boot_uptime() -> float:
    """The guest's uptime when the first testbed command in it started, its boot time:
    /proc/uptime now, or what a batch of runs in one guest handed on (BOOT_ENV)."""
    return float(os.environ.get(BOOT_ENV) or Path("/proc/uptime").read_text().split()[0])


def _vng() -> str:
    # virtme-ng lives in the same virtualenv as this package; its helper
    # `virtme-run` must be on PATH too.
    venv_bin = Path(sys.executable).parent
    vng = venv_bin / "vng"
    if not vng.exists():
        raise TestbedError("virtme-ng (vng) is not installed: run scripts/install.sh")
    return str(vng)


def _guest_script(opts: GuestOptions, argv: list[str]) -> str:
    """Shell code that runs ``python -m testbed.cli argv`` inside the guest."""
    inner = shlex.join(
        [
            "env",
            f"{GUEST_ENV}={opts.emulation}",
            f"LVS_TESTBED_KERNEL_ORIGIN={opts.kernel.origin}",
            f"LVS_TESTBED_KERNEL_CONFIG={opts.kernel.config}",
            "PYTHONUNBUFFERED=1",
            "PYTHONDONTWRITEBYTECODE=1",
            sys.executable,
            "-m",
            "testbed.cli",
            *argv,
        ]
    )
    # The serial console may swallow the first bytes: start with a newline.
    return f"echo; ulimit -n 1048576; cd {shlex.quote(str(opts.checkout))} && exec {inner}"


def vng_command(opts: GuestOptions, argv: list[str], *, shell: Path | None = None) -> list[str]:
    """The vng command line that runs ``python -m testbed.cli argv`` in a guest.

    With ``shell`` (an executable script), the command runs as the guest's
    login shell on the console instead of through --exec, so the terminal's
    keyboard reaches it (for `lab`).
    """
    # a built tree boots as vng boots its own (KBUILD_OUTPUT, in-tree modules)
    run = [] if opts.kernel.tree else ["--run", str(opts.kernel.vmlinuz)]
    cmd = [
        _vng(),
        *run,
        "--name",
        GUEST_NAME,
        "--cpus",
        str(opts.cpus),
        "--memory",
        opts.memory,
        "--rwdir",
        str(opts.checkout),
        "--cwd",
        str(opts.checkout),
    ]
    for path in opts.extra_rw:
        cmd += ["--rwdir", str(path)]
    for arg in opts.boot_args:
        cmd += ["--append", arg]
    if opts.emulation == "tcg":
        cmd.append("--disable-kvm")
    if opts.console:
        cmd.append("--verbose")
    if shell is not None:
        return [*cmd, "--shell", str(shell)]
    script = _guest_script(opts, argv)
    if len(script) > EXEC_INLINE_MAX:
        # vng carries --exec base64-encoded on the kernel command line (2048 bytes on
        # x86, truncated beyond): a long command (a long -k) would hang the guest's init
        path = exec_file(opts)
        path.write_text(f"#!/bin/sh\n{script}\n")
        script = f"sh {shlex.quote(str(path))}"
    return [*cmd, "--exec", script]


def exec_file(opts: GuestOptions) -> Path:
    """Where a guest command too long for the kernel command line is written."""
    cache = opts.checkout / ".cache"
    cache.mkdir(exist_ok=True)
    return cache / f"guest-exec-{os.getpid()}-{threading.get_ident()}.sh"  # guests side by side


def _env(kernel: GuestKernel) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    if kernel.tree is not None:
        env["KBUILD_OUTPUT"] = str(kernel.tree)
    return env


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# guests booted by run_in_guest and still running (several, from threads side by side)
_running: set[subprocess.Popen[bytes]] = set()
_stopped = threading.Event()


def stop_guests() -> None:
    """Kill every guest this process booted that still runs, and boot no more: the
    main thread's way to end guests other threads wait for (a signal reaches the main
    thread only), before those threads try again."""
    _stopped.set()
    running = list(_running)
    for proc in running:  # all told first: a second Ctrl-C while waiting spares none
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in running:
        _kill_group(proc)


def guests_stopped() -> bool:
    """True once stop_guests ran: a thread about to boot a guest should not."""
    return _stopped.is_set()


def run_in_guest(opts: GuestOptions, argv: list[str]) -> int:
    """Boot the guest, run the command, return its exit status.

    KeyboardInterrupt (Ctrl-C, or SIGTERM turned into it by the CLI) kills
    the guest's process group before it propagates.
    """
    if _stopped.is_set():
        raise TestbedError("interrupted: no more guests are booted")
    cmd = vng_command(opts, argv)
    # Always a pipe: qemu opens its stdout with O_TRUNC, which would wipe and
    # overwrite a log file the caller redirected us to.
    proc = subprocess.Popen(
        cmd,
        env=_env(opts.kernel),
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    _running.add(proc)
    try:
        if _stopped.is_set():  # stopped while this guest was being started
            raise TestbedError("interrupted: no more guests are booted")
        assert proc.stdout is not None
        out = sys.stdout.buffer
        while chunk := proc.stdout.read1(65536):
            out.write(chunk.replace(b"\r\n", b"\n"))
            out.flush()
        return proc.wait()
    finally:
        _running.discard(proc)
        if proc.poll() is None:
            _kill_group(proc)
        exec_file(opts).unlink(missing_ok=True)


def run_interactive(opts: GuestOptions, argv: list[str]) -> int:
    """Like run_in_guest but with the terminal attached (for `lab`).

    vng's --exec does not connect the keyboard, so the command becomes the
    guest's shell: a one-off script in the checkout's cache.
    """
    cache = opts.checkout / ".cache"
    cache.mkdir(exist_ok=True)
    script = cache / f"guest-shell-{os.getpid()}.sh"
    script.write_text(f"#!/bin/sh\n{_guest_script(opts, argv)}\n")
    script.chmod(0o755)
    cmd = vng_command(opts, argv, shell=script)
    proc = subprocess.Popen(cmd, env=_env(opts.kernel))
    try:
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
        script.unlink(missing_ok=True)


def _probe_cache_key() -> str:
    qemu = subprocess.run(
        ["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=False
    ).stdout.split("\n", 1)[0]
    return f"{os.uname().release}|{qemu}"


def kvm_boots(kernel: GuestKernel, timeout: float = KVM_PROBE_SECONDS) -> bool:
    """True if qemu with KVM gets this kernel to print its banner in time.

    Where /dev/kvm exists but cannot run a guest, qemu hangs silently (or
    aborts); a working KVM prints "Linux version" within a second or two.
    """
    cmd = [
        "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256M", "-nographic",
        "-no-reboot", "-name", f"{GUEST_NAME}-kvm-probe", "-serial", "stdio", "-monitor", "none",
        "-kernel", str(kernel.vmlinuz), "-append", "console=ttyS0 earlyprintk=serial panic=-1",
    ]  # fmt: skip
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    except OSError:
        return False
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < deadline and proc.poll() is None:
            chunk = proc.stdout.read(65536) or b""
            seen += chunk
            if b"Linux version" in seen:
                return True
            time.sleep(0.1)
        return False
    finally:
        _kill_group(proc)


def choose_emulation(requested: str, kernel: GuestKernel, cache: Path) -> str:
    """ "kvm" only if /dev/kvm really boots a guest here (probed once, cached)."""
    if requested in ("kvm", "tcg"):
        return requested
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    cache_file = cache / "kvm-probe.json"
    key = _probe_cache_key()
    try:
        known = json.loads(cache_file.read_text())
        if known.get("key") == key:
            return "kvm" if known["usable"] else "tcg"
    except (OSError, ValueError, KeyError):
        pass
    print(f"[vm] probing whether KVM can boot a guest (up to {KVM_PROBE_SECONDS} s, "
          "result cached)", flush=True)  # fmt: skip
    started = time.monotonic()
    usable = kvm_boots(kernel)
    seconds = round(time.monotonic() - started, 1)
    print(f"[vm] KVM {'works' if usable else 'cannot boot a guest here'} ({seconds} s)", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(json.dumps({"key": key, "usable": usable, "seconds": seconds}))
    return "kvm" if usable else "tcg"
