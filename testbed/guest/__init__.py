"""Where kernel IPVS comes from when the running kernel lacks it: a virtme-ng guest.

Choose a kernel (installed, an image path, or a Debian release fetched into
the cache), pick the emulation (KVM only if it really boots a guest here),
and run a testbed command line inside::

    kernel = resolve_kernel("trixie", cache=Path(".cache/kernels"))
    opts = GuestOptions(kernel=kernel, checkout=REPO, emulation=choose_emulation("auto", ...))
    exit_status = run_in_guest(opts, ["run", "-k", "forwarding"])
"""

from ._choice import resolve_kernel
from ._debian import PINS, fetch_kernel, fetch_pinned, host_mirror, load_pins, pin_release
from ._image import GuestKernel, from_vmlinuz, installed_kernels, kernel_from_tree
from ._vm import (
    BOOT_ENV,
    GUEST_ENV,
    GUEST_NAME,
    QUIET_ENV,
    GuestOptions,
    boot_uptime,
    choose_emulation,
    guests_stopped,
    in_guest,
    kvm_boots,
    run_in_guest,
    run_interactive,
    stop_guests,
    vng_command,
)

__all__ = [
    "BOOT_ENV",
    "GUEST_ENV",
    "GUEST_NAME",
    "PINS",
    "QUIET_ENV",
    "GuestKernel",
    "GuestOptions",
    "boot_uptime",
    "choose_emulation",
    "fetch_kernel",
    "fetch_pinned",
    "from_vmlinuz",
    "guests_stopped",
    "host_mirror",
    "in_guest",
    "installed_kernels",
    "kernel_from_tree",
    "kvm_boots",
    "load_pins",
    "pin_release",
    "resolve_kernel",
    "run_in_guest",
    "run_interactive",
    "stop_guests",
    "vng_command",
]
