"""A thread's own standard output: runs side by side write apart, shown one by one.

>>> import threading, tempfile, pathlib
>>> log = pathlib.Path(tempfile.mkdtemp()) / "leg.txt"
>>> def leg() -> None:
...     with own_output(log):
...         print("said in the leg")
>>> t = threading.Thread(target=leg); t.start(); t.join()
>>> log.read_text()
'said in the leg\\n'
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class _PerThread:
    """Stands in for sys.stdout: a thread with a file of its own writes there, any
    other thread where sys.stdout went before (print, and sys.stdout.buffer for a
    guest's raw output)."""

    def __init__(self, shared: IO[str]) -> None:
        self.shared = shared
        self.local = threading.local()

    def _target(self) -> IO[str]:
        return getattr(self.local, "file", None) or self.shared

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:  # buffer, isatty, fileno, encoding...
        return getattr(self._target(), name)


_lock = threading.Lock()
_proxy: _PerThread | None = None
_users = 0


@contextlib.contextmanager
def own_output(path: Path) -> Iterator[None]:
    """In the calling thread, standard output goes to ``path`` until the block ends;
    other threads' output is untouched."""
    global _proxy, _users
    with path.open("w", encoding="utf-8", errors="replace") as file:
        with _lock:
            if _proxy is None:
                _proxy = _PerThread(sys.stdout)
                sys.stdout = _proxy  # type: ignore[assignment]
            _users += 1
            proxy = _proxy
        proxy.local.file = file
        try:
            yield
        finally:
            proxy.local.file = None
            with _lock:
                _users -= 1
                if _users == 0:
                    if sys.stdout is proxy:  # unless something replaced it since
                        sys.stdout = proxy.shared  # type: ignore[assignment]
                    _proxy = None
