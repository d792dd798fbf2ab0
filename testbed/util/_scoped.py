"""A start/stop pair used as a context manager that never leaves half a start behind."""

from __future__ import annotations

from typing import Self


class Scoped:
    """``with X(...) as x``: start(); stop() on exit, and also when start() fails midway."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
