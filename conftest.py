"""Plain ``pytest`` in the checkout, as users type it (``sudo pytest`` in a VM).

With no paths given, pytest collects its testpaths, tests/ and conformance/.
The conformance suite needs root and a kernel with IPVS. Where both are here
(a Vagrant VM, a lab machine), plain pytest runs the unit tests and then the
conformance suite natively, and writes results/<run id>/ (results.json,
junit.xml, report.html) as ``lvs-testbed run`` does. Elsewhere it runs the
unit tests only and says in one line how to run the suite: ``sudo ./lvs run``
boots a guest kernel that has IPVS. Tests that boot a guest themselves
(marker ``vm``) run only when asked for (``-m vm``). Explicit paths, ``-m``
and the testbed's own commands are left as they are.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from testbed.cli._plain import HOW, conformance_unavailable
from testbed.registry import POLICIES

REPO = Path(__file__).resolve().parent
CONFORMANCE = REPO / "conformance"

_PLAIN = pytest.StashKey[bool]()  # pytest was given no paths: it collects its testpaths
_WHY_NOT = pytest.StashKey[str]()  # why the conformance suite cannot run here ("": it can)
_RUN_DIR = pytest.StashKey[Path]()


# The conformance suite's options live here, in the root conftest, which pytest reads
# before it parses the command line: plain `pytest --profile smoke` knows them too.
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lvs-testbed")
    group.addoption("--topology", default=None, help="cluster .toml/.py or name (default)")
    group.addoption("--mode", default=None, help="forwarding modes, comma-separated")
    group.addoption("--protocol", default=None, help="protocols, comma-separated")
    group.addoption("--family", default=None, help="address families, comma-separated")
    group.addoption("--checksums", default=None, help="checksum handling, comma-separated")
    group.addoption("--combinations", default="pairwise", choices=POLICIES,
                    help="which mode x protocol x family x checksums combinations")  # fmt: skip
    group.addoption("--profile", default="full", help="suite profile (conformance/profiles.toml)")


def _plain(config: pytest.Config) -> bool:
    return config.stash.get(_PLAIN, False)


@pytest.hookimpl(tryfirst=True)  # before junitxml and pytest-timeout read their options
def pytest_configure(config: pytest.Config) -> None:
    config.stash[_PLAIN] = config.args_source == pytest.Config.ArgsSource.TESTPATHS
    if not _plain(config):
        return
    config.stash[_WHY_NOT] = why = conformance_unavailable()
    if why:  # collect the unit tests only (a path pytest was given is never "ignored")
        config.args[:] = [a for a in config.args if Path(config.rootpath, a) != CONFORMANCE]
        return
    if config.option.collectonly:
        return
    from testbed.cli._dispatch import commit
    from testbed.report import ResultsPlugin

    run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    run_dir = REPO / "results" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    config.stash[_RUN_DIR] = run_dir
    if config.option.xmlpath is None:
        config.option.xmlpath = str(run_dir / "junit.xml")
    if getattr(config.option, "timeout", None) is None:
        config.option.timeout = 1200  # a hang is a red test with its stack, as in `run`
    meta = {"run_id": run_id, "command": "pytest", "commit": commit(), "topology": "default",
            "combinations": "pairwise", "profile": "full"}  # fmt: skip
    config.pluginmanager.register(ResultsPlugin(run_dir, meta), "lvs-results")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``-m``, plain pytest leaves out the tests that boot a guest."""
    if not _plain(config) or config.option.markexpr:
        return
    booting = [item for item in items if item.get_closest_marker("vm")]
    if booting:
        config.hook.pytest_deselected(items=booting)
        items[:] = [item for item in items if not item.get_closest_marker("vm")]


def pytest_report_header(config: pytest.Config) -> str | None:
    if _plain(config) and (why := config.stash.get(_WHY_NOT, "")):
        return f"lvs-testbed: unit tests only; the conformance suite ({why}): {HOW}"
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    config = terminalreporter.config
    if _plain(config) and (why := config.stash.get(_WHY_NOT, "")):
        terminalreporter.write_line(f"conformance suite not run ({why}): {HOW}")


def pytest_unconfigure(config: pytest.Config) -> None:
    if (run_dir := config.stash.get(_RUN_DIR, None)) is not None:
        from testbed.cli._dispatch import finish

        finish(run_dir, {})
