"""What every layer shares: the one user-facing error, start/stop scopes, waits, log tails,
a thread's own output.

>>> from testbed.util import TestbedError, wait_until
>>> wait_until(lambda: True, timeout=1)
True
"""

from ._errors import TestbedError
from ._output import own_output
from ._paths import REPO
from ._process import tail_file, wait_for_line
from ._scoped import Scoped
from ._waiting import wait_until

__all__ = [
    "REPO",
    "Scoped",
    "TestbedError",
    "own_output",
    "tail_file",
    "wait_for_line",
    "wait_until",
]
