"""The load tools: their statistics, and holder + server talking over loopback (no root)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadgen import holder
from loadgen.stats import (
    alternated,
    drifted,
    latency_summary,
    merge_ramps,
    merge_results,
    percentile,
    spread,
)
from loadgen.stream import pattern
from testbed import TestbedError
from testbed.load import parse_iperf

REPO = Path(__file__).resolve().parent.parent


# -- statistics ------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = list(range(100, 0, -1))  # unsorted on purpose
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_latency_summary() -> None:
    s = latency_summary([1.0, 2.0, 3.0, 100.0])
    assert s == {"n": 4, "p50": 2.0, "p99": 100.0, "max": 100.0, "mean": 26.5}
    assert latency_summary([]) == {"n": 0}


def test_spread_and_drift() -> None:
    s = spread([100.0, 90.0, 110.0, 105.0, 95.0])
    assert s["median"] == 100.0 and s["min"] == 90.0 and s["max"] == 110.0
    assert s["rel_spread"] == pytest.approx(0.2)
    assert not drifted([100, 95, 105, 109, 91])
    assert drifted([100, 95, 105, 111, 91])  # 11 % above the median
    assert not drifted([])


def test_alternated_reverses_every_other_repetition() -> None:
    paths = ["direct", "nat", "dr"]
    assert alternated(paths, 0) == paths
    assert alternated(paths, 1) == ["dr", "nat", "direct"]
    assert alternated(paths, 2) == paths


def test_merge_ramps_sums_on_a_common_grid() -> None:
    a = [[0.0, 0], [0.5, 10], [1.0, 20]]
    b = [[0.4, 5], [1.2, 7]]
    assert merge_ramps([a, b], step=0.5) == [[0.0, 0], [0.5, 15], [1.0, 25], [1.2, 27]]
    assert merge_ramps([[], []]) == []


def test_merge_results_pools_samples_and_adds_counts() -> None:
    # one waited 10 s for a connect that then timed out
    one = {"attempted": 3, "connected": 2, "held": 2, "failures": {"ETIMEDOUT": 1},
           "ramp_s": 12.0, "active_s": 2.0, "samples_ms": [1.0, 3.0],
           "ramp": [[0, 0], [2, 2]]}  # fmt: skip
    two = {"attempted": 2, "connected": 2, "held": 2, "failures": {"ETIMEDOUT": 1, "x": 2},
           "ramp_s": 1.0, "active_s": 1.0, "samples_ms": [2.0, 50.0], "resets": 1}  # fmt: skip
    m = merge_results([one, two])
    assert m["attempted"] == 5 and m["connected"] == 4 and m["held"] == 4 and m["resets"] == 1
    assert m["failures"] == {"ETIMEDOUT": 2, "x": 2} and m["failed"] == 4
    assert m["rate_per_s"] == 2.0  # 4 connections up within 2 s: the timeout is a failure
    assert m["ramp_s"] == 12.0
    assert m["connect_ms"]["max"] == 50.0 and m["connect_ms"]["p50"] == 2.0
    with pytest.raises(ValueError):
        merge_results([])


# -- holder input -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["203.0.113.100", "x:80", "203.0.113.100:0", "1.2.3.4:70000"])
def test_holder_rejects_bad_targets(bad: str) -> None:
    with pytest.raises(holder.HolderError):
        holder.parse_target(bad)


def test_holder_splits_sources_and_count_over_workers() -> None:
    plan = holder.Plan(targets=(("127.0.0.1", 1),), sources=("a", "b", "c"), count=10,
                       concurrency=9)  # fmt: skip
    parts = holder.split(plan, 2)
    assert [p.sources for p in parts] == [("a", "c"), ("b",)]
    assert [p.count for p in parts] == [5, 5]
    assert sum(p.concurrency for p in parts) <= 9
    with pytest.raises(holder.HolderError, match="source addresses"):
        holder.split(plan, 4)


def test_holder_refuses_more_connections_than_open_files() -> None:
    with pytest.raises(holder.HolderError, match="hard limit"):
        holder.ensure_fd_limit(10**9)


def _holder(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loadgen.holder", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, **kw)  # fmt: skip


def test_holder_bad_input_is_one_line() -> None:
    done = _holder("--target", "nowhere", "--source", "127.0.0.2", "--count", "1")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["holder: error: target 'nowhere' is not "
                                                "IPv4-address:port"]  # fmt: skip


# -- holder and server over loopback ---------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    """loadgen.server with two SO_REUSEPORT workers on a free loopback port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-m", "loadgen.server", "--name", "r9", "--port",
                             str(port), "--workers", "2", "--ready-file", str(ready)],
                            cwd=REPO)  # fmt: skip
    deadline = time.monotonic() + 20
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield proc, port
    if proc.poll() is None:
        proc.terminate()
    proc.wait(10)


def test_server_answers_http_with_its_name(server) -> None:  # type: ignore[no-untyped-def]
    import urllib.request

    _proc, port = server
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
        assert resp.read() == b"r9"
        assert resp.headers["X-Real-Server"] == "r9"


def test_holder_holds_counts_and_closes(server) -> None:  # type: ignore[no-untyped-def]
    _proc, port = server
    done = _holder("--target", f"127.0.0.1:{port}", "--source", "127.0.0.2", "--source",
                   "127.0.0.3", "--count", "600", "--hold", "0.5", "--workers", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    ramped, result = (json.loads(line) for line in done.stdout.splitlines())
    assert ramped["event"] == "ramped" and ramped["held"] == 600 and ramped["failed"] == 0
    assert ramped["connect_ms"]["n"] == 600 and "samples_ms" not in ramped
    assert result["event"] == "result"
    assert result["established_at_end"] == 600 and result["resets"] == 0
    assert result["connect_ms"]["n"] == 600
    assert result["connect_ms"]["p50"] <= result["connect_ms"]["p99"] <= result["connect_ms"]["max"]
    assert result["ramp"][-1][1] == 600


def test_holder_sees_the_server_close_its_connections(server) -> None:  # type: ignore[no-untyped-def]
    proc, port = server
    h = subprocess.Popen([sys.executable, "-m", "loadgen.holder", "--target", f"127.0.0.1:{port}",
                          "--source", "127.0.0.2", "--count", "50", "--await-release"],
                         cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)  # fmt: skip
    try:
        assert h.stdout is not None and h.stdin is not None
        assert json.loads(h.stdout.readline())["held"] == 50
        proc.terminate()  # the server and its worker close every held connection
        proc.wait(10)
        time.sleep(1.0)
        h.stdin.write("release\n")
        h.stdin.flush()
        result = json.loads(h.stdout.readline())
    finally:
        h.kill()
        h.wait()
    assert result["resets"] + result["closed_by_peer"] == 50
    assert result["established_at_end"] == 0


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def test_server_workers_die_with_a_killed_parent(server) -> None:  # type: ignore[no-untyped-def]
    proc, _port = server
    workers = _children(proc.pid)
    assert len(workers) == 1  # --workers 2: the parent serves too
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{w}").exists() for w in workers)


def test_holder_reports_refused_connections() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    done = _holder("--target", f"127.0.0.1:{port}", "--source", "127.0.0.2", "--count", "5")
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["failures"] == {"ECONNREFUSED": 5} and result["connected"] == 0


# -- iperf3 ------------------------------------------------------------------------------------


def test_parse_iperf_reads_the_receiver() -> None:
    text = "noise\n" + json.dumps({"end": {
        "sum_sent": {"bits_per_second": 2e9, "retransmits": 3, "seconds": 3.0},
        "sum_received": {"bits_per_second": 1.5e9, "seconds": 3.01}}})  # fmt: skip
    r = parse_iperf(text)
    assert r.bits_per_second == 1.5e9 and r.retransmits == 3 and r.seconds == 3.01


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("iperf3: error - unable to connect", "printed no JSON"),
        ('{"error": "unable to connect to server"}', "unable to connect"),
        ('{"end": {}}', "lacks the receiver"),
    ],
)
def test_parse_iperf_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(TestbedError, match=message):
        parse_iperf(text)


def test_pattern_is_continuous_across_chunks() -> None:
    whole = pattern(0, 4096)
    assert b"".join(pattern(o, 100) for o in range(0, 4096, 100))[:4096] == whole
    assert pattern(13, 7) == whole[13:20]
    assert whole[8:16] == (1).to_bytes(8, "big")


def test_pattern_detects_a_lost_chunk() -> None:
    assert pattern(0, 512) + pattern(1024, 512) != pattern(0, 1024)


# -- the request client over TCP and UDP -------------------------------------------------------


@pytest.fixture
def udp_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    """loadgen.server serving TCP and UDP on one free port (both families)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-m", "loadgen.server", "--name", "u7", "--port",
                             str(port), "--udp", str(port), "--ready-file", str(ready)],
                            cwd=REPO)  # fmt: skip
    deadline = time.monotonic() + 20
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


def _ask(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "loadgen.ask", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_ask_gets_one_answer_per_request_over_tcp_and_udp(udp_server: int) -> None:
    for proto in ("tcp", "udp"):
        assert _ask("--protocol", proto, "--count", "3", f"127.0.0.1:{udp_server}") == ["u7"] * 3
    assert _ask("--protocol", "tcp", f"[::1]:{udp_server}") == ["u7"]
    assert _ask("--protocol", "udp", f"[::1]:{udp_server}") == ["u7"]


def test_udp_answers_come_from_the_address_the_request_was_sent_to(udp_server: int) -> None:
    """The answer to a datagram sent to 127.0.0.2 leaves from 127.0.0.2, not from the
    route's source (127.0.0.1): ask's connected socket would not accept it otherwise.
    In DR and TUN this is the VIP."""
    assert _ask("--protocol", "udp", "--source", "127.0.0.1", f"127.0.0.2:{udp_server}") == ["u7"]


def test_ask_prints_an_empty_line_for_an_unanswered_request() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # bound, never answers
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert _ask("--protocol", "udp", "--timeout", "0.3", f"127.0.0.1:{port}") == [""]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("203.0.113.100:80", ("203.0.113.100", 80)),
     ("[2001:db8:203:113::100]:8080", ("2001:db8:203:113::100", 8080))],
)  # fmt: skip
def test_ask_endpoints(text: str, parsed: tuple[str, int]) -> None:
    from loadgen.ask import parse_endpoint

    assert parse_endpoint(text) == parsed
    for bad in ("203.0.113.100", "host:80", "203.0.113.100:0", "[::1]:x"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)


def test_wire_answer_names_its_server() -> None:
    from loadgen import wire

    assert wire.name_in(wire.answer("r2")) == "r2"
    assert wire.name_in(b"HTTP/1.0 200 OK\r\n") == "" and wire.name_in(b"garbage") == ""


def test_ask_from_a_chosen_port_and_from_one_socket(udp_server: int) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    for _ in range(2):  # the same source port twice in a row
        assert _ask("--protocol", "udp", "--sport", str(free), f"127.0.0.1:{udp_server}") == ["u7"]
    assert _ask("--protocol", "udp", "--one-socket", "--count", "3",
                f"127.0.0.1:{udp_server}") == ["u7"] * 3  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "loadgen.ask", "--protocol", "tcp",
                           "--one-socket", "127.0.0.1:1"], cwd=REPO, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 2 and "--one-socket is for UDP" in done.stderr


def test_vsftpd_config_serves_anonymously_both_families_in_the_foreground(tmp_path: Path) -> None:
    from testbed.load import vsftpd_config

    conf = dict(
        line.split("=", 1)
        for line in vsftpd_config("r2", tmp_path / "root", tmp_path / "e", tmp_path / "l").split()
    )
    assert conf["listen_ipv6"] == "YES" and conf["listen"] == "NO" and conf["background"] == "NO"
    assert conf["ftpd_banner"] == "r2" and conf["anon_root"] == str(tmp_path / "root")
    assert conf["write_enable"] == "NO" and conf["connect_from_port_20"] == "YES"


# -- the compiled connection-rate client (loadgen/connrate.c) ------------------------------------


@pytest.fixture(scope="module")
def connrate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lvs-connrate built from source here, as scripts/install.sh builds it."""
    import shutil

    if shutil.which("cc") is None:
        pytest.skip("no C compiler (scripts/install.sh installs gcc)")
    binary = tmp_path_factory.mktemp("native") / "lvs-connrate"
    subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-o", str(binary),
                    str(REPO / "loadgen" / "connrate.c")], check=True)  # fmt: skip
    return binary


def _connrate(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)


def test_connrate_connects_counts_and_pools_like_the_holder(connrate: Path, server) -> None:  # type: ignore[no-untyped-def]
    _proc, port = server
    done = _connrate(connrate, "--target", f"127.0.0.1:{port}", "--source", "127.0.0.1",
                     "--source", "127.0.0.2", "--count", "3000", "--concurrency", "64",
                     "--samples")  # fmt: skip
    assert done.returncode == 0, done.stderr
    part = json.loads(done.stdout)
    assert part["attempted"] == part["connected"] == 3000 and part["failures"] == {}
    assert len(part["samples_ms"]) == 3000 and all(ms >= 0 for ms in part["samples_ms"])
    assert 0 < part["active_s"] <= part["ramp_s"]
    pooled = merge_results([part, part])  # as the holder's workers are pooled
    assert pooled["connected"] == 6000 and pooled["connect_ms"]["n"] == 6000
    assert pooled["rate_per_s"] == pytest.approx(6000 / part["active_s"], rel=0.01)


def test_connrate_reports_refused_connections_by_name(connrate: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    part = json.loads(_connrate(connrate, "--target", f"127.0.0.1:{port}", "--count", "7").stdout)
    assert part["failures"] == {"ECONNREFUSED": 7} and part["connected"] == 0
    assert "samples_ms" not in part  # only with --samples


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "3"], "--target and --count are required"),
        (["--target", "localhost:80", "--count", "3"], "a bad --target"),
        (["--target", "127.0.0.1:0", "--count", "3"], "a bad --target"),
        (["--target", "127.0.0.1:80", "--count", "0"], "--count must be a positive integer"),
        (["--target", "[::1]:80", "--source", "127.0.0.1", "--count", "1"], "another family"),
        (["--target", "127.0.0.1:80", "--count", "1", "--concurrency", "9999999"],
         "--concurrency must be"),
        (["--target"], "an option without its value"),
    ],
)  # fmt: skip
def test_connrate_bad_input_is_one_line(connrate: Path, args: list[str], message: str) -> None:
    done = _connrate(connrate, *args)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr
