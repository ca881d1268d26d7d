"""The import rules of docs/architecture.md, checked on every module of the package.

Each module's imports are read from its source (``ast``: imports inside functions and
``TYPE_CHECKING`` blocks count too), so a rule holds for what the code says, not for what one
test run happened to load. The checker itself is tested on a small package that breaks every
rule, so this test cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import paths

PACKAGE = paths.ROOT / "densityd"

# Standard-library modules that reach outside the process (files, network, processes, the
# clock's side effects aside): the pure planner core imports none of them.
IO_STDLIB = frozenset(
    {
        "asyncio", "ftplib", "glob", "http", "io", "mmap", "multiprocessing", "os", "pathlib",
        "requests", "selectors", "shutil", "signal", "socket", "socketserver", "sqlite3", "ssl",
        "subprocess", "tempfile", "threading", "urllib",
    }
)  # fmt: skip
SDKS = frozenset({"docker", "libvirt"})


@dataclass(frozen=True, slots=True)
class Imported:
    """One import in one module: the importing module, the module imported, where."""

    module: str
    target: str
    line: int


def module_name(path: Path, root: Path) -> str:
    """``densityd/plan/core/cost.py`` -> ``densityd.plan.core.cost`` (a package: its name)."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path) -> Iterator[Imported]:
    """Every import of every module under ``root``, relative ones resolved.

    ``from a.b import c`` yields ``a.b.c``, whether ``c`` is a module or a name in ``a.b``:
    either way it is inside ``a.b``, which is what the rules look at.
    """
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Imported(module, alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    yield Imported(module, f"{base}.{alias.name}", node.lineno)


def within(name: str, prefix: str) -> bool:
    """Whether module ``name`` is ``prefix`` or inside it."""
    return name == prefix or name.startswith(prefix + ".")


def top(name: str) -> str:
    return name.partition(".")[0]


def violations(root: Path) -> list[str]:
    """Every import that breaks a rule, as ``module:line imports target: rule``."""
    pkg = root.name
    core, sources = f"{pkg}.plan.core", f"{pkg}.collect.sources"
    shared = (f"{pkg}.model", f"{pkg}.units")
    found: list[str] = []
    for item in imports(root):
        module, target = item.module, item.target
        ours = within(target, pkg)

        def broken(rule: str, item: Imported = item) -> None:
            found.append(f"{item.module}:{item.line} imports {item.target}: {rule}")

        if top(target) in SDKS and not within(module, sources):
            broken(f"only {sources} may import docker or libvirt")
        if within(module, core):
            if ours and not (within(target, core) or any(within(target, s) for s in shared)):
                broken(f"the planner core imports only itself, {' and '.join(shared)}")
            elif not ours and (
                top(target) not in sys.stdlib_module_names or top(target) in IO_STDLIB
            ):
                broken("the planner core imports no I/O and nothing outside the standard library")
        if within(module, f"{pkg}.serve") and within(target, sources):
            broken("serve/ reads snapshots, never a source")
        if within(module, f"{pkg}.collect") and any(
            within(target, f"{pkg}.{later}") for later in ("history", "plan", "serve")
        ):
            broken("collect/ comes first: it imports no history, plan or serve")
        if within(module, f"{pkg}.history") and (
            any(within(target, f"{pkg}.{other}") for other in ("collect", "serve"))
            or (within(target, f"{pkg}.plan") and not within(target, f"{core}.model"))
        ):
            broken("history/ imports only the model and the planner's data types")
        if within(module, f"{pkg}.plan") and (
            within(target, sources) or within(target, f"{pkg}.serve")
        ):
            broken("plan/ never imports a source or serve/")
        if within(module, f"{pkg}.plan.output") and (
            top(target) in IO_STDLIB
            or any(within(target, f"{pkg}.{io}") for io in ("collect", "history"))
            or within(target, f"{pkg}.plan.inputs.prometheus")
        ):
            broken("plan/output/ formats answers: no I/O")
        entry_points = (f"{pkg}.cli", f"{pkg}.daemon", f"{pkg}.__main__")
        if any(within(target, e) for e in entry_points) and module not in (
            f"{pkg}.__main__",
            f"{pkg}.cli",
        ):
            broken("nothing imports an entry point")
    return found


def test_the_package_keeps_its_import_rules() -> None:
    found = violations(PACKAGE)
    assert not found, "imports that break docs/architecture.md's rules:\n" + "\n".join(found)


def test_the_walk_sees_the_package() -> None:
    seen = {item.module for item in imports(PACKAGE)}
    for module in (
        "densityd.collect.sources.docker",
        "densityd.history.store",
        "densityd.plan.core.slots",
        "densityd.serve.exporter",
    ):
        assert module in seen
    targets = {item.target for item in imports(PACKAGE) if item.module.startswith("densityd.")}
    assert {"docker", "libvirt"} <= targets  # the lazy import of the libvirt source counts


def write(root: Path, name: str, text: str) -> None:
    path = root.joinpath(*name.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in [path.parent, *path.parent.parents]:
        if parent == root.parent:
            break
        (parent / "__init__.py").touch()
    path.write_text(text)


@pytest.mark.parametrize(
    ("module", "text", "rule"),
    [
        ("plan.core.cost", "from pkg.history.store import HistoryStore\n", "planner core"),
        ("plan.core.cost", "import sqlite3\n", "no I/O"),
        ("plan.core.cost", "import tabulate\n", "no I/O"),
        ("plan.core.cost", "def f():\n    from ..inputs import local\n", "planner core"),
        ("serve.exporter", "from pkg.collect.sources.docker import DockerSource\n", "serve/"),
        ("serve.exporter", "import docker\n", "docker or libvirt"),
        ("history.store", "import libvirt\n", "docker or libvirt"),
        ("plan.live", "from pkg.collect.sources import host\n", "plan/ never"),
        ("collect.sampler", "from pkg.plan.core.model import View\n", "collect/ comes first"),
        ("history.store", "from pkg.plan.inputs.local import PlanContext\n", "history/"),
        ("plan.output.local", "import socket\n", "no I/O"),
        ("serve.web", "from pkg.daemon import run_daemon\n", "entry point"),
    ],
)
def test_each_forbidden_import_is_found(tmp_path: Path, module: str, text: str, rule: str) -> None:
    root = tmp_path / "pkg"
    write(root, "model", "")
    write(root, "plan.core.model", "from pkg.model import Snapshot\nimport math\n")
    write(root, "collect.sources.docker", "import docker\nfrom pkg.model import Snapshot\n")
    assert violations(root) == []  # the allowed imports pass
    write(root, module, text)
    found = violations(root)
    assert len(found) == 1 and rule in found[0], found
    assert found[0].startswith(f"pkg.{module}:")
