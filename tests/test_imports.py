"""Every module of `avidence` imports on its own, and each package imports only what its rules
allow (docs/architecture.md, "Which package may import which").

An import cycle hides as long as something else happens to import the modules in the right
order first, so each module is imported cold: `avidence.*` dropped from `sys.modules`, third-party
modules kept. The dependency rules are checked on the source with `ast`, so a lazy import inside a
function or under `TYPE_CHECKING` counts as much as one at the top.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import pkgutil
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


@dataclass(slots=True, frozen=True)
class Rule:
    package: str
    must_not_import: tuple[str, ...]
    why: str


# The table docs/architecture.md shows: a module belongs to the longest package named here, so
# `avidence` alone is its `__init__` (imported by every other module, it must drag nothing in).
RULES = (
    Rule(
        "avidence",
        ("avidence.server", "avidence.client", "avidence.storage", "avidence.transcode"),
        "every import of a subpackage runs it first",
    ),
    Rule(
        "avidence.client",
        ("avidence.server",),
        "the uploader and the offline verifier are installed without the server",
    ),
    Rule(
        "avidence.storage",
        ("avidence.server", "avidence.client", "avidence.transcode", "aiohttp.web", "tusclient"),
        "a store keeps bytes under keys: no HTTP, tus, catalog or media",
    ),
    Rule(
        "avidence.transcode",
        ("avidence.server", "sqlalchemy"),
        "media work knows files and ffmpeg, not the catalog",
    ),
    Rule(
        "avidence.server",
        ("avidence.server.cli",),
        "it composes the others; commands attach through `register(group)`, never import the "
        "entry point back",
    ),
    Rule(
        "avidence.server.tus",
        ("avidence.server.evidence", "avidence.server.cli"),
        "tus hands a verified upload over through the completion hook on its context; the app "
        "wires the custody core in",
    ),
)

# Run by alembic with a connection in its context, never imported by the package itself.
NOT_IMPORTABLE_ALONE = {"avidence.server.catalog.migrations.env": "alembic environment script"}

# One process for every module: each round drops `avidence.*` and imports one module. Compiled
# code is kept between rounds (PYTHONDONTWRITEBYTECODE would otherwise recompile every module in
# every round, doubling the time); module bodies still run afresh each round.
COLD_IMPORTS = """
import importlib, importlib.machinery, json, sys

compiled = {}
compile_source = importlib.machinery.SourceFileLoader.source_to_code

def cached(self, data, path, *, _optimize=-1):
    if (path, data) not in compiled:
        compiled[path, data] = compile_source(self, data, path, _optimize=_optimize)
    return compiled[path, data]

importlib.machinery.SourceFileLoader.source_to_code = cached
failures = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "avidence" or m.startswith("avidence.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt at import are failures too
        failures[name] = f"{type(exc).__name__}: {exc}"
with open(sys.argv[2], "w", encoding="utf-8") as out:
    json.dump(failures, out)
"""


def installed_packages() -> list[str]:
    """The packages a wheel installs: setuptools lists them, it does not discover them."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        packages: list[str] = tomllib.load(f)["tool"]["setuptools"]["packages"]
    return packages


def package_folder(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # imports the parents only, never `package`
    assert spec is not None and spec.submodule_search_locations, package
    return Path(next(iter(spec.submodule_search_locations)))


def modules() -> Iterator[tuple[str, bool]]:
    """Every module of the installed packages as (name, is_package)."""
    for package in installed_packages():
        yield package, True
        for found in pkgutil.iter_modules([str(package_folder(package))], f"{package}."):
            yield found.name, found.ispkg


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(installed_packages())
    unlisted = sorted(name for name, is_package in modules() if is_package and name not in listed)
    assert unlisted == [], f"missing from [tool.setuptools] packages, so from the wheel: {unlisted}"


def test_every_module_imports_on_its_own(tmp_path: Path) -> None:
    names = sorted(name for name, _ in modules() if name not in NOT_IMPORTABLE_ALONE)
    assert len(names) > 100
    out = tmp_path / "failures.json"
    subprocess.run(
        [sys.executable, "-c", COLD_IMPORTS, json.dumps(names), str(out)],
        check=True,
        timeout=240,
    )
    failures: dict[str, str] = json.loads(out.read_text(encoding="utf-8"))
    assert failures == {}, "modules that do not import alone:\n" + "\n".join(
        f"  {name}: {why}" for name, why in sorted(failures.items())
    )


def owner(module: str) -> str:
    """The package of RULES a module belongs to: the longest one that contains it."""
    rooms = [r.package for r in RULES if module == r.package or module.startswith(r.package + ".")]
    return max(rooms, key=len)


def imported_names(source: str, *, module: str, is_package: bool) -> set[str]:
    """Every module name an import statement in `source` may load, relative ones resolved.

    `from a import b` may load `a` or the submodule `a.b`: both count."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                anchor = parts if is_package else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def sources(rule: Rule) -> Iterator[tuple[str, bool, Path]]:
    """The source files of the modules `rule` governs, as (module, is_package, path)."""
    folder = package_folder(rule.package)
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join([rule.package, *(parts[:-1] if is_package else parts)])
        if owner(name) == rule.package:
            yield name, is_package, path


def forbidden(name: str, prefixes: tuple[str, ...]) -> str | None:
    """The prefix among `prefixes` that covers `name`, if any."""
    return next((p for p in prefixes if name == p or name.startswith(p + ".")), None)


def test_packages_import_only_what_their_rules_allow() -> None:
    broken: set[str] = set()
    for rule in RULES:
        checked = 0
        for module, is_package, path in sources(rule):
            source = path.read_text(encoding="utf-8")
            for name in imported_names(source, module=module, is_package=is_package):
                if (prefix := forbidden(name, rule.must_not_import)) is not None:
                    broken.add(f"{module} imports {prefix}: {rule.why}")
            checked += 1
        assert checked > 0, f"no source found for {rule.package}"
    assert not broken, "\n".join(sorted(broken))


def test_import_scan_resolves_relative_and_from_imports() -> None:
    source = (
        "from aiohttp import web\n"
        "from .. import server\n"
        "from ..server.cli import main\n"
        "from . import keys\n"
        "def later():\n"
        "    import sqlalchemy.ext.asyncio\n"
    )
    found = imported_names(source, module="avidence.storage.s3", is_package=False)
    assert {"aiohttp.web", "avidence.server", "avidence.server.cli", "avidence.storage.keys"} <= (
        found
    )
    assert "sqlalchemy.ext.asyncio" in found
    assert imported_names("from . import x", module="avidence.client", is_package=True) == {
        "avidence.client",
        "avidence.client.x",
    }
    assert forbidden("aiohttp.web.Response", ("sqlalchemy", "aiohttp.web")) == "aiohttp.web"
    assert forbidden("aiohttp", ("aiohttp.web",)) is None
    assert forbidden("avidence.server_x", ("avidence.server",)) is None
    assert owner("avidence") == "avidence" and owner("avidence.client.tus") == "avidence.client"


def test_import_rules_match_docs_architecture() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Which package may import which", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`avidence"):
            continue
        package = re.findall(r"`([^`]+)`", cells[0])[0]
        documented[package] = set(re.findall(r"`([^`]+)`", cells[1]))
    assert documented == {r.package: set(r.must_not_import) for r in RULES}


# The evidence table has one repository (docs/architecture.md, "The custody core"): what a record
# is and which records an agency may see are decided there, so no other room reads the table.
EVIDENCE_TABLE = "avidence.server.catalog.schema.evidence"
EVIDENCE_TABLE_OWNERS = ("avidence.server.evidence", "avidence.server.catalog")


def test_only_the_custody_core_reads_the_evidence_table() -> None:
    server = next(r for r in RULES if r.package == "avidence.server")
    readers = set()
    for rule in RULES:
        if not (rule.package + ".").startswith(server.package + "."):
            continue
        for module, is_package, path in sources(rule):
            if forbidden(module, EVIDENCE_TABLE_OWNERS) is not None:
                continue
            source = path.read_text(encoding="utf-8")
            names = imported_names(source, module=module, is_package=is_package)
            if EVIDENCE_TABLE in names or "schema.evidence" in source:
                readers.add(module)
    assert not readers, (
        "these modules read the evidence table; ask avidence.server.evidence.records or "
        f".tallies instead: {', '.join(sorted(readers))}"
    )
