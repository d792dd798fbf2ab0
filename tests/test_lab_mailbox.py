"""A running lab answers `lab NAME --check` from another terminal (testbed.labs Mailbox):
the exchange, a dead lab's stale mailbox, a busy lab, a failing checker."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from testbed import TestbedError
from testbed.labs import Answer, Mailbox, clean_mailboxes
from testbed.labs import _outside as outside


def test_a_running_lab_answers_and_cleans_up(tmp_path: Path) -> None:
    asked = []

    def answer() -> Answer:
        asked.append(threading.current_thread().name)
        return Answer(report="2 of 3 tasks done", ok=False)

    box = Mailbox(tmp_path, "dr-by-hand")
    assert not box.live()
    with box.serve(answer):
        assert box.live()
        got = Mailbox(tmp_path, "dr-by-hand").ask(timeout=10)
        assert got == Answer(report="2 of 3 tasks done", ok=False)
        assert len(asked) == 1 and asked[0] != threading.current_thread().name
        assert sorted(p.name for p in box.dir.iterdir()) == ["live"]  # no leftovers
    assert not box.live() and not box.dir.exists()


def test_another_labs_mailbox_is_not_this_ones(tmp_path: Path) -> None:
    with Mailbox(tmp_path, "nat-by-hand").serve(lambda: Answer("x", True)):
        assert not Mailbox(tmp_path, "dr-by-hand").live()


def _dead(root: Path, lab: str) -> Mailbox:
    """A lab's mailbox as a killed lab leaves it: a heartbeat that no longer moves."""
    box = Mailbox(root, lab)
    box.dir.mkdir(parents=True)
    (box.dir / "live").write_text("12345 7\n")
    return box


def test_a_killed_labs_mailbox_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outside, "LIVE_S", 0.5)
    box = _dead(tmp_path, "failover")
    started = time.monotonic()
    assert not box.live()
    assert time.monotonic() - started >= 0.5  # it watched the heartbeat that long


def test_a_slow_check_keeps_the_lab_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outside, "LIVE_S", 0.5)
    monkeypatch.setattr(outside, "BEAT_S", 0.1)

    def slow() -> Answer:
        time.sleep(1.5)  # three times LIVE_S: the heartbeat must go on meanwhile
        return Answer("done", True)

    box = Mailbox(tmp_path, "sync")
    with box.serve(slow):
        assert box.ask(timeout=10) == Answer("done", True)


def test_a_busy_lab_times_out_in_one_line(tmp_path: Path) -> None:
    release = threading.Event()

    def busy() -> Answer:
        release.wait(10)
        return Answer("late", True)

    box = Mailbox(tmp_path, "weights")
    with box.serve(busy):
        with pytest.raises(TestbedError, match="did not answer within 1 s"):
            box.ask(timeout=1)
        release.set()


def test_a_checker_error_is_the_answer(tmp_path: Path) -> None:
    def broken() -> Answer:
        raise RuntimeError("no such host r9")

    box = Mailbox(tmp_path, "schedulers")
    with box.serve(broken):
        got = box.ask(timeout=10)
    assert not got.ok and "RuntimeError: no such host r9" in got.report


def test_a_lab_that_ends_while_asked_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outside, "LIVE_S", 0.3)
    box = _dead(tmp_path, "health-checks")  # nobody beats, nobody answers
    with pytest.raises(TestbedError, match="ended before it answered"):
        box.ask(timeout=10)


def test_clean_removes_only_dead_labs_mailboxes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outside, "LIVE_S", 1.5)
    dead = _dead(tmp_path, "broken-dr-arp")
    running = Mailbox(tmp_path, "nat-by-hand")
    with running.serve(lambda: Answer("x", True)):
        removed = clean_mailboxes(tmp_path)
        assert removed == [f"lab mailbox {dead.dir}"] and running.live()
    assert not dead.dir.exists()
    assert clean_mailboxes(tmp_path / "absent") == []
