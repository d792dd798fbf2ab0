"""The vng command line that re-runs the CLI in a guest (built, not booted)."""

from __future__ import annotations

from pathlib import Path

from testbed.guest import GUEST_ENV, GUEST_NAME, GuestKernel, GuestOptions, vng_command

HOST_KERNEL = GuestKernel(version="6.1.0-56-amd64", vmlinuz=Path("/boot/vmlinuz-6.1.0-56-amd64"),
                          modules_dir=Path("/lib/modules/6.1.0-56-amd64"),
                          origin="installed")  # fmt: skip


def _cmd(**kw) -> list[str]:  # type: ignore[no-untyped-def]
    opts = GuestOptions(**{"kernel": HOST_KERNEL, "checkout": Path("/src/lvs"),
                           "emulation": "tcg", **kw})  # fmt: skip
    return vng_command(opts, ["run", "--run-id", "x"])


def _value(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_tcg_disables_kvm_and_kvm_does_not() -> None:
    assert "--disable-kvm" in _cmd(emulation="tcg")
    assert "--disable-kvm" not in _cmd(emulation="kvm")


def test_the_kernels_console_is_shown_only_when_asked() -> None:
    """vng sends the guest kernel's console to /dev/null unless verbose: a boot that
    panics under emulation would otherwise end without a word."""
    assert "--verbose" in _cmd(console=True)
    assert "--verbose" not in _cmd()


def test_guest_is_named_and_shares_the_checkout_read_write() -> None:
    cmd = _cmd()
    assert _value(cmd, "--name") == GUEST_NAME
    assert _value(cmd, "--rwdir") == "/src/lvs"
    assert _value(cmd, "--run") == "/boot/vmlinuz-6.1.0-56-amd64"


def test_inner_command_marks_the_guest_and_raises_file_limit() -> None:
    script = _value(_cmd(emulation="tcg"), "--exec")
    assert f"{GUEST_ENV}=tcg" in script
    assert "ulimit -n 1048576" in script
    assert script.rstrip().endswith("-m testbed.cli run --run-id x")


def test_downloaded_kernel_boots_its_own_image() -> None:
    other = GuestKernel(version="7.2.13+deb14-amd64",
                        vmlinuz=Path("/c/k/usr/lib/modules/7.2.13+deb14-amd64/vmlinuz"),
                        modules_dir=Path("/c/k/usr/lib/modules/7.2.13+deb14-amd64"),
                        origin="Debian sid")  # fmt: skip
    cmd = _cmd(kernel=other)
    assert _value(cmd, "--run") == str(other.vmlinuz)
    assert "--rodir" not in cmd  # vng links the modules next to the image itself


def test_interactive_lab_runs_as_the_guest_shell() -> None:
    opts = GuestOptions(kernel=HOST_KERNEL, checkout=Path("/src/lvs"), emulation="tcg")
    cmd = vng_command(opts, ["lab", "dr"], shell=Path("/src/lvs/.cache/guest-shell-1.sh"))
    assert _value(cmd, "--shell") == "/src/lvs/.cache/guest-shell-1.sh"
    assert "--exec" not in cmd  # --exec would not connect the keyboard


def test_a_long_guest_command_goes_through_a_file(tmp_path: Path) -> None:
    """vng puts --exec on the kernel command line (2048 bytes on x86): a long -k must not
    reach it, or the guest's init hangs on a truncated command."""
    from testbed.guest._vm import EXEC_INLINE_MAX, exec_file

    kernel = GuestKernel(version="6.1", vmlinuz=tmp_path / "vmlinuz", modules_dir=tmp_path,
                         origin="test")  # fmt: skip
    opts = GuestOptions(kernel=kernel, checkout=tmp_path, emulation="tcg")
    short = vng_command(opts, ["run", "-k", "sched"])
    assert "testbed.cli run -k sched" in short[-1] and not exec_file(opts).exists()
    long_k = " or ".join(f"test_{i}" for i in range(200))
    cmd = vng_command(opts, ["run", "-k", long_k])
    assert len(cmd[-1]) < EXEC_INLINE_MAX and cmd[-1].startswith("sh ")
    assert long_k in exec_file(opts).read_text()


def test_boot_arguments_reach_the_kernels_command_line() -> None:
    cmd = _cmd(boot_args=("slab_nomerge", "ip_vs.conn_tab_bits=16"))
    appended = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--append"]
    assert appended == ["slab_nomerge", "ip_vs.conn_tab_bits=16"]
    assert "--append" not in _cmd()
