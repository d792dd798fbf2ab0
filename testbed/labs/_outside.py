"""Checking a running lab from outside its CLI: `lvs-testbed lab NAME --check` typed in
another terminal while the student's `lvs-testbed lab NAME` runs.

The running lab keeps a mailbox, a directory in the checkout (which the host and
its guest kernel share, so it works whether the lab runs natively or in a
guest): ``live`` is touched every second while the lab runs; a request file
written there is answered, by a thread of the running lab, with the checker's
report on the live cluster::

    with Mailbox(root, "dr-by-hand").serve(answer):   # in the running lab
        ...
    Mailbox(root, "dr-by-hand").ask(timeout=300)      # from another terminal

A lab killed without clean-up leaves a ``live`` file whose count no longer moves:
it does not count as running, and `lvs-testbed clean` removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..util import REPO, TestbedError

MAILBOXES = REPO / ".cache" / "labs"  # the checkout's: the host and its guest share it
LIVE_S = 5.0  # a heartbeat that does not move for this long is a dead lab's
BEAT_S = 1.0
POLL_S = 0.2


@dataclass(frozen=True)
class Answer:
    """The checker's report on a running lab, and whether every task passed."""

    report: str
    ok: bool


class Mailbox:
    """One lab's mailbox under ``root`` (the checkout's .cache/labs)."""

    def __init__(self, root: Path, lab: str) -> None:
        self.dir = root / lab

    @property
    def _live(self) -> Path:
        return self.dir / "live"

    def _beat_seen(self) -> str | None:
        try:
            return self._live.read_text()
        except OSError:
            return None

    def live(self) -> bool:
        """True while a running lab answers here: its heartbeat moves within ``LIVE_S``.
        (A count, not a timestamp: a guest's clock under emulation is not the host's.)"""
        first = self._beat_seen()
        if first is None:
            return False
        deadline = time.monotonic() + LIVE_S
        while time.monotonic() < deadline:
            time.sleep(POLL_S)
            if self._beat_seen() != first:
                return True
        return False

    def ask(self, *, timeout: float) -> Answer:
        """The running lab's answer to one check request."""
        key = uuid.uuid4().hex
        request, answer = self.dir / f"request-{key}", self.dir / f"answer-{key}.json"
        _write_atomically(request, "{}")
        try:
            deadline = time.monotonic() + timeout
            beat, moved = self._beat_seen(), time.monotonic()
            while not answer.exists():
                if (now_beat := self._beat_seen()) != beat:
                    beat, moved = now_beat, time.monotonic()
                elif time.monotonic() - moved > LIVE_S:
                    raise TestbedError(f"the running lab {self.dir.name} ended before it answered")
                if time.monotonic() > deadline:
                    raise TestbedError(
                        f"the running lab {self.dir.name} did not answer within {timeout:.0f} s "
                        "(a command still running in its CLI?)"
                    )
                time.sleep(POLL_S)
            data = json.loads(answer.read_text())
            return Answer(report=data["report"], ok=bool(data["ok"]))
        finally:
            request.unlink(missing_ok=True)
            answer.unlink(missing_ok=True)

    @contextlib.contextmanager
    def serve(self, answer: Callable[[], Answer]) -> Iterator[None]:
        """Answer requests (from a thread) while the block runs; the mailbox goes after."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob("*"):  # a killed run's requests and answers
            stale.unlink(missing_ok=True)
        _write_atomically(self._live, f"{os.getpid()} 0\n")
        stop = threading.Event()
        # the heartbeat has its own thread: a check under emulation may take a minute
        threads = [
            threading.Thread(target=self._beat, args=(stop,), daemon=True),
            threading.Thread(target=self._answer, args=(answer, stop), daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            shutil.rmtree(self.dir, ignore_errors=True)

    def _beat(self, stop: threading.Event) -> None:
        beats = 0
        while not stop.wait(BEAT_S):
            beats += 1
            with contextlib.suppress(OSError):
                _write_atomically(self._live, f"{os.getpid()} {beats}\n")

    def _answer(self, answer: Callable[[], Answer], stop: threading.Event) -> None:
        while not stop.wait(POLL_S):
            for request in sorted(self.dir.glob("request-*")):
                key = request.name.removeprefix("request-")
                try:
                    got = answer()
                except Exception as exc:  # reported to the asker, not lost in a thread
                    got = Answer(report=f"the check failed: {type(exc).__name__}: {exc}", ok=False)
                _write_atomically(self.dir / f"answer-{key}.json",
                                  json.dumps({"report": got.report, "ok": got.ok}))  # fmt: skip
                request.unlink(missing_ok=True)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def clean_mailboxes(root: Path = MAILBOXES) -> list[str]:
    """Remove the mailboxes of labs that no longer run (killed without clean-up)."""
    removed = []
    for box in sorted(root.glob("*")) if root.is_dir() else []:
        if box.is_dir() and not Mailbox(root, box.name).live():
            shutil.rmtree(box, ignore_errors=True)
            removed.append(f"lab mailbox {box}")
    return removed
