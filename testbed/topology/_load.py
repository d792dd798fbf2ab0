"""Reading a topology: a TOML declaration, or a Python module that builds a spec.

TOML is the declaration most topologies need; a Python module (any
``topologies/<name>.py`` defining ``build() -> ClusterSpec``) can compute
one, for example N real servers in a loop. Both are accepted wherever a
topology is, and both fail in one line on bad input.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import tomllib
from pathlib import Path
from typing import Any

from ..util import REPO, TestbedError
from ._spec import Client, ClusterSpec, DualStack, RealServer, Service, TwoLegged

TOPOLOGIES = REPO / "topologies"
DEFAULT_TOPOLOGY = TOPOLOGIES / "default.toml"


def load_topology(path: str | Path | None = None, **service: Any) -> ClusterSpec:
    """Read a topology (default: topologies/default.toml): a .toml file or a .py module.

    A bare name (``wide``) means topologies/<name>.toml or .py. Keyword
    arguments override fields of the service (``None`` values are ignored).
    """
    path = _find(path)
    overrides = {k: v for k, v in service.items() if v is not None}
    try:
        if path.suffix == ".py":
            spec = _from_module(path)
            return spec.with_service(**overrides) if overrides else spec
        return _from_dict(_read_toml(path), source=str(path), service_overrides=overrides)
    except TestbedError as exc:
        raise TestbedError(f"topology {path.name}: {exc}") from None


def _find(path: str | Path | None) -> Path:
    if not path:
        return DEFAULT_TOPOLOGY
    given = Path(path)
    if not given.exists() and given.parent == Path(".") and not given.suffix:
        for suffix in (".toml", ".py"):
            if (TOPOLOGIES / f"{given}{suffix}").exists():
                return TOPOLOGIES / f"{given}{suffix}"
    if not given.exists():
        raise TestbedError(f"topology file {given} does not exist")
    if given.suffix not in (".toml", ".py"):
        raise TestbedError(f"topology file {given}: not a .toml declaration or a .py module")
    return given


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TestbedError(f"topology file {path}: {exc}") from None


def _from_module(path: Path) -> ClusterSpec:
    """Run a topology module and call its ``build()``."""
    loader = importlib.util.spec_from_file_location(f"_lvs_topology_{path.stem}", path)
    if loader is None or loader.loader is None:
        raise TestbedError(f"topology file {path}: cannot be imported")
    module = importlib.util.module_from_spec(loader)
    try:
        loader.loader.exec_module(module)
        build = getattr(module, "build", None)
        if not callable(build):
            raise TestbedError("a topology module must define build() -> ClusterSpec")
        spec = build()
    except TestbedError:
        raise
    except Exception as exc:  # a user's module: one line, not a traceback
        raise TestbedError(f"{type(exc).__name__}: {exc}") from None
    if not isinstance(spec, ClusterSpec):
        raise TestbedError(f"build() returned {type(spec).__name__}, not a ClusterSpec")
    return dataclasses.replace(spec, source=str(path))


def _build(cls: type, fields: dict[str, Any], what: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(fields) - known
    if unknown:
        raise TestbedError(f"{what}: unknown key(s) {', '.join(sorted(unknown))}")
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = sorted(required - set(fields))
    if missing:
        raise TestbedError(f"{what}: missing key(s) {', '.join(missing)}")
    return cls(**fields)


def _from_dict(
    data: dict[str, Any], *, source: str, service_overrides: dict[str, Any]
) -> ClusterSpec:
    def table(key: str) -> dict[str, Any]:
        value = data.get(key)
        if not isinstance(value, dict):
            raise TestbedError(f"missing [{key}] table")
        return value

    def tables(key: str) -> list[dict[str, Any]]:
        value = data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise TestbedError(f"missing [[{key}]] entries")
        return value

    extra = set(data) - {
        "name", "outside", "inside", "service", "router", "clients", "directors", "real_servers",
        "dual_stack",
    }  # fmt: skip
    if extra:
        raise TestbedError(f"unknown top-level key(s) {', '.join(sorted(extra))}")
    return ClusterSpec(
        name=str(data.get("name", Path(source).stem)),
        outside=data.get("outside", ""),
        inside=data.get("inside", ""),
        service=_build(Service, {**table("service"), **service_overrides}, "[service]"),
        router=_build(TwoLegged, table("router"), "[router]"),
        clients=tuple(_build(Client, c, "[[clients]]") for c in tables("clients")),
        directors=tuple(_build(TwoLegged, d, "[[directors]]") for d in tables("directors")),
        real_servers=tuple(
            _build(RealServer, r, "[[real_servers]]") for r in tables("real_servers")
        ),
        dual_stack=_build(DualStack, table("dual_stack"), "[dual_stack]")
        if "dual_stack" in data
        else None,
        source=source,
    )
