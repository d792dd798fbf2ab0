"""Fixtures of the conformance suite: one cluster per session, tests parametrized by the registry.

The network is built once (software emulation makes building slow) and
reconfigured per test. Tests that take ``shape`` run once per selected
(mode, protocol, family, checksums) combination, tests that take ``mode``
once per selected forwarding mode, ``family`` once per address family,
``state_table_mode`` once per kind of connection table: a new registry
entry is exercised by every test that applies to it, and a test that does
not apply says why in its skip.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from typing import IO

import pytest

from testbed import FAMILIES, MODES, PROTOCOLS, Cluster, load_topology
from testbed.guest import QUIET_ENV
from testbed.kernel import KernelLog, bug_reports, missing_module, running_kernel_has_ipvs
from testbed.observe import Exchange, record_timings, send_exchange, unservable
from testbed.registry import (
    CHECKSUMS,
    Combination,
    Family,
    Mode,
    Profile,
    combinations,
    load_profiles,
)
from testbed.util import TestbedError


def _profile(config: pytest.Config) -> Profile:
    try:
        return load_profiles()[config.getoption("--profile")]
    except TestbedError as exc:
        raise pytest.UsageError(str(exc)) from None


LAST = "conformance/test_labs.py"  # labs change hosts by hand, as students do: they go last


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep only the conformance tests the profile selects (every test under ``full``;
    plain pytest collects the unit tests too), labs last."""
    profile = _profile(config)

    def kept(item: pytest.Item) -> bool:
        return not item.nodeid.startswith("conformance/") or profile.selects(item.nodeid)

    dropped = [item for item in items if not kept(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if kept(item)]
    # stable: the rest keep their order
    items.sort(key=lambda item: (item.nodeid.startswith(LAST), not _tolerates_load(item)))


def _tolerates_load(item: pytest.Item) -> bool:
    """Its checks hold however busy the guest is: they look at packets, tables and
    counters, with waits driven by events, and measure no time."""
    return item.get_closest_marker("tolerates_load") is not None


class _Quiet:
    """The wait for the runs alongside this one (QUIET_ENV: the lock file they hold) to
    end, before the first test that measures time."""

    waited_s: float | None = None

    @classmethod
    def wait(cls) -> None:
        if cls.waited_s is not None or not (path := os.environ.get(QUIET_ENV)):
            return
        started = time.monotonic()
        with open(path) as lock:
            if not _try_lock(lock):
                print("\n[lvs-testbed] the tests from here on measure time: waiting for the "
                      "runs alongside to end", flush=True)  # fmt: skip
                fcntl.flock(lock, fcntl.LOCK_SH)
        cls.waited_s = time.monotonic() - started
        record_timings({"waited_for_alongside_s": cls.waited_s})


def _try_lock(lock: IO[str]) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that measures time runs on a guest no other run loads (its fixtures too)."""
    if item.nodeid.startswith("conformance/") and not _tolerates_load(item):
        _Quiet.wait()


@pytest.fixture(scope="session")
def profile(request: pytest.FixtureRequest) -> Profile:
    """The run's profile: its selection and the sizes it runs at."""
    return _profile(request.config)


def _selected_modes(config: pytest.Config) -> tuple[Mode, ...]:
    return MODES.select(config.getoption("--mode"))


def _selected_families(config: pytest.Config) -> tuple[Family, ...]:
    return FAMILIES.select(config.getoption("--family"))


def _shapes(config: pytest.Config) -> list[Combination]:
    return combinations(
        config.getoption("--combinations"),
        modes=_selected_modes(config),
        protocols=PROTOCOLS.select(config.getoption("--protocol")),
        families=_selected_families(config),
        checksums=CHECKSUMS.select(config.getoption("--checksums")),
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize over the registry: shapes, modes, families, one mode per connection
    table."""
    config = metafunc.config
    if "shape" in metafunc.fixturenames:
        shapes = _shapes(config)
        metafunc.parametrize("shape", shapes, ids=[s.id for s in shapes], scope="module")
    if "mode" in metafunc.fixturenames:
        modes = _selected_modes(config)
        metafunc.parametrize("mode", modes, ids=[m.name for m in modes], scope="module")
    if "family" in metafunc.fixturenames:
        families = _selected_families(config)
        metafunc.parametrize("family", families, ids=[f.name for f in families], scope="module")
    if "state_table_mode" in metafunc.fixturenames:
        chosen = {m.name for m in _selected_modes(config)}
        modes = tuple(m for m in MODES.first_per(lambda m: m.connection_table) if m.name in chosen)
        metafunc.parametrize("state_table_mode", modes, ids=[m.name for m in modes],
                             scope="module")  # fmt: skip


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    if os.geteuid() != 0 or not running_kernel_has_ipvs():
        pytest.exit(
            "the conformance suite needs root and a kernel with IPVS: run it with "
            "`lvs-testbed run`, which boots a guest kernel when this one lacks IPVS",
            returncode=2,
        )
    spec = load_topology(request.config.getoption("--topology"))
    c = Cluster(spec)
    try:
        c.start()
        record_timings(c.timings)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def kernel_log() -> Iterator[KernelLog | None]:
    """The kernel log from the start of the session (None where it cannot be read)."""
    try:
        log = KernelLog()
    except OSError as exc:
        print(f"[kernel log] not watched for kernel bug reports: {exc}")
        yield None
        return
    yield log
    log.close()


@pytest.fixture(scope="module", autouse=True)
def no_kernel_bug_reports(
    request: pytest.FixtureRequest, kernel_log: KernelLog | None
) -> Iterator[None]:
    """A module during which the kernel reported a bug of its own (WARN, BUG, oops,
    KASAN, lockdep) fails, at its end, showing the reports."""
    yield
    if kernel_log is None:
        return
    if reports := bug_reports(kernel_log.new()):
        module = request.module.__name__.rsplit(".", 1)[-1]
        beside = (" (or during a run alongside, which shares this kernel)"
                  if os.environ.get(QUIET_ENV) and _Quiet.waited_s is None else "")  # fmt: skip
        pytest.fail(
            f"the kernel reported {len(reports)} bug(s) during {module}{beside}:\n"
            + "\n\n".join(reports),
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """On failure, append the director's IPVS table and the sysctls in force."""
    report = yield
    if report.failed and call.when == "call" and "cluster" in getattr(item, "fixturenames", ()):
        cluster: Cluster = item.funcargs["cluster"]  # type: ignore[attr-defined]
        report.sections.append(("LVS state at failure", cluster.describe()))
    return report


def skip_unless_available(
    cluster: Cluster, *, needed_by: str, family: Family | None = None, **service: object
) -> None:
    """Skip, naming the module, if this kernel lacks one the service would need."""
    base = cluster.base_spec.in_family(family) if family else cluster.base_spec
    spec = base.with_service(**service)
    if reason := missing_module(*spec.modules(), needed_by=needed_by):
        pytest.skip(reason)


def skip_unless_family(cluster: Cluster, family: Family) -> None:
    """Skip in one line if the topology has no addresses of the family."""
    if reason := cluster.base_spec.lacks(family):
        pytest.skip(reason)


def skip_unless_topology(cluster: Cluster, **counts: int) -> None:
    """Skip in one line if the topology has fewer hosts than the test needs."""
    if reason := cluster.base_spec.needs(**counts):
        pytest.skip(reason)


@pytest.fixture(scope="module")
def exchange(shape: Combination, cluster: Cluster) -> Exchange:
    """Traffic of one service shape, sent once and captured at every hop."""
    if reason := unservable(cluster.base_spec, shape):
        pytest.skip(reason)
    skip_unless_available(cluster, needed_by=shape.id, family=shape.family,
                          mode=shape.mode.name, protocol=shape.protocol.name)  # fmt: skip
    return send_exchange(cluster, shape)
