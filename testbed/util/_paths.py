"""Where the checkout is: the guest mounts it, programs run from it."""

from pathlib import Path

# testbed/util/_paths.py -> the repository root (holding testbed/, loadgen/, topologies/)
REPO = Path(__file__).resolve().parent.parent.parent
