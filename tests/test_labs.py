"""Teaching labs as data: every lab file reads, fits the default topology and keeps its
promises to the suite; a broken lab file fails in one line; the picture and the CLI's
lab commands that need no kernel. (The checkers themselves are proved on a live
cluster by conformance/test_labs.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from testbed.labs import KINDS, LABS, read_lab
from testbed.labs._daemons import age
from testbed.sched import MODELS, Dest, Flow, list_order
from testbed.topology import load_topology, svg_picture, text_picture
from testbed.util import TestbedError

REPO = Path(__file__).resolve().parent.parent
BASE = load_topology()


def test_there_are_ten_labs_and_five_that_start_broken() -> None:
    assert len(LABS) >= 10
    assert sum(lab.kind == "troubleshoot" for lab in LABS.values()) >= 5


@pytest.mark.parametrize("name", LABS.names())
def test_each_lab_fits_the_default_topology_and_has_a_wrong_solution(name: str) -> None:
    lab = LABS[name]
    assert lab.unfit(BASE) is None
    assert lab.wrong, "the suite proves the checker on at least one wrong solution"
    spec = lab.spec(BASE)
    text = lab.solution_text(spec)  # every placeholder resolves
    assert not re.search(r"\{[a-z_0-9]+\}", text), text


def test_the_schedulers_labs_answer_is_the_reference_models() -> None:
    """The lab's reference prediction is what testbed.sched's wrr model picks, with the
    real servers in the kernel's list order (the testbed adds r1, r2, r3)."""
    lab = LABS["schedulers"]
    spec = lab.spec(BASE)
    added = [Dest(name=r.name, addr=str(r.ip), weight=r.weight) for r in spec.real_servers]
    model = MODELS["wrr"](list_order(added))
    flows = [Flow(saddr="203.0.113.11", sport=40000 + i, daddr="x", dport=80) for i in range(9)]
    picks = [model.schedule(f).name for f in flows]  # type: ignore[union-attr]
    (step,) = lab.solution
    assert " ".join(picks) in step.run[0]


GOOD = """
title = "t"
kind = "build"
minutes = 5
story = "s"
[[task]]
name = "a"
goal = "g"
check = "answers"
hint = "h"
[[solution]]
host = "d1"
run = ["true"]
"""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('check = "answers"', 'check = "magic"'), "unknown lab check 'magic'"),
        (
            ('check = "answers"', 'check = "answers"\nwith = { colour = 1 }'),
            "check answers takes no colour",
        ),
        (('check = "answers"', 'check = "sysctl"'), "check sysctl needs host, key, value"),
        (('hint = "h"\n', ""), "missing 'hint'"),
        (('kind = "build"', 'kind = "troubleshoot"'), "needs [[setup]] steps"),
        (('kind = "build"', 'kind = "quiz"'), "kind 'quiz' is not one of"),
        (("minutes = 5", 'minutes = "five"'), "minutes must be a int"),
        (('run = ["true"]', "run = []"), "a step needs commands (run) or a file to write"),
        (('run = ["true"]', 'run = "true"'), "run must be a list of commands"),
        (('run = ["true"]', 'file = "/tmp/x"'), "needs both file (its path) and text"),
        (('hint = "h"', 'hint = "h"\nwithin = 99'), "within must be seconds (0 to 60)"),
        (
            ("[[solution]]", '[[wrong]]\ntitle = "w"\nfails = ["b"]\n[[solution]]'),
            "fails must name tasks of the lab",
        ),
        (('title = "t"', "title = "), "lab bad.toml:"),
    ],
)
def test_a_broken_lab_file_fails_in_one_line(tmp_path: Path, change: tuple[str, str],
                                              message: str) -> None:  # fmt: skip
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace(*change, 1))
    with pytest.raises(TestbedError) as err:
        read_lab(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_good_lab_file_reads(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(GOOD)
    lab = read_lab(path)
    assert (lab.name, lab.kind, lab.start, [t.name for t in lab.tasks]) == (
        "ok",
        "build",
        "bare",
        ["a"],
    )
    assert set(KINDS) == {"build", "troubleshoot"}


def test_an_unknown_placeholder_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "ph.toml"
    path.write_text(GOOD.replace('run = ["true"]', 'run = ["ping {nowhere}"]'))
    with pytest.raises(TestbedError, match="unknown placeholder 'nowhere'"):
        read_lab(path).solution_text(BASE)


def test_a_file_step_keeps_config_braces_and_fills_placeholders(tmp_path: Path) -> None:
    """keepalived.conf's own braces are text; only {name} is a placeholder, and {host}
    names the host the step runs in."""
    path = tmp_path / "file.toml"
    text = 'file = "{labdir}/{host}.conf"\n'
    text += 'text = "vrrp_instance V {\\n  virtual_ipaddress { {vip} }\\n}"'
    path.write_text(GOOD.replace('run = ["true"]', text))
    step = read_lab(path).solution[0].render(BASE)
    assert step.file == "/tmp/lvs-lab/d1.conf"
    vip = BASE.service.vip
    assert step.text == f"vrrp_instance V {{\n  virtual_ipaddress {{ {vip} }}\n}}"
    written = subprocess.run(["sh", "-c", step.commands[0].replace(step.file, str(tmp_path / "o"))],
                             check=True)  # fmt: skip
    assert written.returncode == 0 and (tmp_path / "o").read_text() == step.text + "\n"
    assert "cat > /tmp/lvs-lab/d1.conf <<'EOF'" in read_lab(path).solution_text(BASE)


def test_the_picture_shows_every_host_and_where_the_vip_is() -> None:
    text = text_picture(BASE, holder="d2")
    for host in BASE.hosts:
        assert host.name in text or f"({str(getattr(host, 'inside', ''))[-2:]}" in text
    assert "VIP on d2" in text and "outside 203.0.113.0/24" in text
    assert "no director holds the VIP" in text_picture(BASE, holder=None)
    svg = ET.fromstring(svg_picture(BASE, holder="d1"))
    labels = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    assert {"c1", "d1", "r3", "VIP .100"} <= labels


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_lab_list_and_solution_need_no_kernel() -> None:
    listed = _cli("lab", "list")
    assert listed.returncode == 0 and all(name in listed.stdout for name in LABS)
    solved = _cli("lab", "nat-by-hand", "--solution")
    assert solved.returncode == 0 and "d1> ipvsadm -A -t 203.0.113.100:80 -s rr" in solved.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lab", "nosuchlab"], "unknown lab or forwarding mode 'nosuchlab'"),
        (["lab", "weights", "--apply", "solution"], "--apply goes with --check"),
        (["lab", "weights", "--check", "--apply", "wrong-9"], "is not one of solution, wrong-1"),
        (["lab", "dr", "--check"], "are for labs, not modes"),
    ],
)
def test_bad_lab_input_is_one_line(args: list[str], message: str) -> None:
    done = _cli(*args)
    assert done.returncode == 2 and message in done.stderr, done
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_process_age_is_read_from_proc() -> None:
    started = time.monotonic()
    child = subprocess.Popen(["sleep", "5"])
    try:
        time.sleep(0.3)
        assert 0.2 <= age(child.pid) <= time.monotonic() - started + 0.05
    finally:
        child.kill()
        child.wait()


def test_the_announce_check_finds_the_packet_that_made_a_server_ask() -> None:
    """The router's ARP request is judged by the packet queued behind it: the first IP
    packet then sent to the router (another host's does not count)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import ARP, Ether

    from testbed.labs._checks import _asked_for
    from testbed.net import Frame

    gw, gw_mac, d1_mac, me = "198.51.100.1", "02:00:00:00:00:01", "02:00:00:00:00:02", "02:aa"
    vip, own = "203.0.113.100", "198.51.100.11"

    def out(packet: object, at: float) -> Frame:
        return Frame("r1-eth0", at, 4, bytes(packet))  # 4: PACKET_OUTGOING

    ask = out(Ether(src=me, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc=vip, pdst=gw), 1)
    to_d1 = out(Ether(dst=d1_mac) / IP(src=own, dst="198.51.100.254") / TCP(), 2)
    answer = out(Ether(dst=gw_mac) / IP(src=vip, dst="192.0.2.11") / TCP(flags="SA"), 3)
    arp, queued = _asked_for([ask, to_d1, answer], gw, gw_mac)
    assert arp.psrc == vip and queued.src == vip
    mine = out(Ether(dst=gw_mac) / IP(src=own, dst="192.0.2.11") / TCP(flags="FA"), 2)
    assert _asked_for([ask, mine, answer], gw, gw_mac)[1].src == own  # its own traffic asked
    assert _asked_for([to_d1, answer], gw, gw_mac) is None  # it never asked
