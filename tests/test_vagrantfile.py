"""The Vagrantfile, as `vagrant validate` reads it (syntax and Vagrant's own config
checks; no box and no provider needed). Booting it is proven by hand: README."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _validate(directory: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"VAGRANT_CWD": str(directory), "VAGRANT_CHECKPOINT_DISABLE": "1"}
    return subprocess.run(["vagrant", "validate", "--ignore-provider"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture
def vagrant() -> None:
    if shutil.which("vagrant") is None:
        pytest.skip(
            "vagrant is not installed (scripts/install.sh installs it on a host, not in the VM)"
        )


@pytest.mark.usefixtures("vagrant")
def test_the_vagrantfile_validates(tmp_path: Path) -> None:
    shutil.copy(REPO / "Vagrantfile", tmp_path)
    done = _validate(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.usefixtures("vagrant")
def test_a_broken_vagrantfile_does_not(tmp_path: Path) -> None:
    text = (REPO / "Vagrantfile").read_text().replace("config.vm.hostname =", "config.vm.hostnam =")
    (tmp_path / "Vagrantfile").write_text(text)
    done = _validate(tmp_path)
    assert done.returncode != 0 and "hostnam" in done.stdout + done.stderr
