"""What plain `pytest` in the checkout can run here (the root conftest.py asks)."""

from __future__ import annotations

import os

HOW = "sudo ./lvs run (it boots a guest kernel with IPVS where this one has none)"


def conformance_unavailable() -> str:
    """Why the conformance suite cannot run natively here, or "" if it can."""
    if os.geteuid() != 0:
        return "it needs root"
    from ..kernel import running_kernel_has_ipvs

    if not running_kernel_has_ipvs():
        return "this kernel lacks IPVS"
    return ""
