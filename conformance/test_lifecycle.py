"""The testbed's own promise: an interrupted or killed run leaves nothing behind.

Runs a second, smaller testbed run inside the same kernel (with its own
bridge prefix, so the session's cluster is untouched), interrupts it once
with SIGINT and once with SIGKILL, and checks what is left: processes of its
network (found by their environment marker), and its bridges.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import Cluster
from testbed.cluster import MARK_ENV, PREFIX_ENV, clean_native, marked_processes, our_bridges
from testbed.observe import request_sequence
from testbed.util import wait_for_line

# what is left behind is looked at, not when (the nested run waits up to minutes)
pytestmark = pytest.mark.tolerates_load

REPO = Path(__file__).resolve().parent.parent
PREFIX = "lvt"
# the nested run's own cluster: as small as a cluster can be, so it builds quickly
TINY = """
name = "tiny"
outside = "192.0.2.0/24"
inside = "198.51.100.0/24"
[service]
vip = "192.0.2.100"
dip = "198.51.100.254"
[router]
name = "gw"
outside = "192.0.2.1"
inside = "198.51.100.1"
[[clients]]
name = "c1"
ip = "192.0.2.11"
[[directors]]
name = "d1"
outside = "192.0.2.2"
inside = "198.51.100.2"
[[real_servers]]
name = "r1"
ip = "198.51.100.11"
"""


# the nested run's one test (its cluster is what is interrupted) is in this module:
# pytest collects only it, not the whole suite (importing every module and
# parametrizing every test takes about half a minute under emulation)
NESTED_MODULE = "test_forwarding.py"


def _start_nested_run(tmp_path: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != MARK_ENV}
    env[PREFIX_ENV] = PREFIX
    env["PYTEST_ADDOPTS"] = f"{env.get('PYTEST_ADDOPTS', '')} -o python_files={NESTED_MODULE}"
    topology = tmp_path / "tiny.toml"
    topology.write_text(TINY)
    # --commit: the run would otherwise ask git (two processes, one of which stats the
    # whole checkout)
    return subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "run", "--mode", "nat", "-k", "rr_order",
         "--topology", str(topology), "--results", str(tmp_path), "--commit", "nested-run"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _leftovers(owner: int) -> tuple[list[int], list[str]]:
    pids = [p for p, o in marked_processes().items() if o == owner]
    bridges = [b for b, o in our_bridges().items() if b.startswith(PREFIX)]
    return pids, bridges


def test_ctrl_c_mid_run_removes_network_and_processes(cluster: Cluster, tmp_path: Path) -> None:
    """SIGINT while the cluster is up: the run tears its network down and exits non-zero.

    Source: the README's clean-up guarantees ("A run removes its network,
    processes and guest on exit, on Ctrl-C and on SIGTERM").
    """
    proc = _start_nested_run(tmp_path)
    # the network is up and the real servers are still starting: the run is mid-way
    # for seconds to come, whatever the emulation's speed
    wait_for_line(proc, "[cluster] network up", timeout=600)
    assert _leftovers(proc.pid)[1], "the nested run's bridges should exist while it runs"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, f"an interrupted run must not exit 0:\n{out[-2000:]}"
    pids, bridges = _leftovers(proc.pid)
    assert not pids and not bridges, f"left behind: processes {pids}, bridges {bridges}"


def test_sigkill_leftovers_are_removed_by_the_next_run(cluster: Cluster, tmp_path: Path) -> None:
    """SIGKILL leaves orphans; orphan cleanup (run at every start) removes exactly those.

    The session's own, live cluster must survive that cleanup. Source: the
    README's clean-up guarantees ("After SIGKILL, the next run removes the
    orphans before it starts").
    """
    proc = _start_nested_run(tmp_path)
    wait_for_line(proc, "[cluster] configured", timeout=600)  # network, servers, IPVS up
    proc.kill()
    proc.wait(30)
    pids, bridges = _leftovers(proc.pid)
    # Mininet's shells die with their pty; the real-server programs and the
    # bridges outlive the killed run
    assert pids, "SIGKILL should leave orphaned real-server processes to clean"
    assert bridges, "SIGKILL should leave the run's bridges to clean"
    clean_native(orphans_only=True, quiet=True)
    pids, bridges = _leftovers(proc.pid)
    assert not pids and not bridges, f"orphans left: processes {pids}, bridges {bridges}"
    reply = request_sequence(cluster, cluster.spec.clients[0].name, 1)
    assert reply and reply[0] in {r.name for r in cluster.spec.real_servers}, (
        f"the session cluster broke after orphan cleanup: {reply!r}"
    )
