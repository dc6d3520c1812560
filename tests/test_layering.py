"""Where code lives, checked from the source (issue 18): rules live in the app; a job
turns a queue message into one domain call.

Imports point down: `jobs/handlers` -> domain apps (`yesgoddess/<app>/`) -> `yesgoddess/core`.
The job framework (`jobs/*.py`, `jobs/management`) knows no domain app; the domain knows
the framework only through its public entry (`jobs.api`: enqueue and job state, and
`jobs.rq_classes`); `yesgoddess/media` is plain file processing, free of Django.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.registry import JOBS

from .conftest import ROOT

HANDLERS = ROOT / "jobs" / "handlers"
# Project wiring, not a domain app: the URL table mounts the framework's staff views.
PROJECT_WIRING = {"urls.py", "settings.py", "wsgi.py", "__init__.py"}
DOMAIN_MAY_IMPORT_FROM_JOBS = {"jobs.api", "jobs.rq_classes"}
MAX_HANDLER_MODULE_LINES = 150
MAX_HANDLER_FUNCTION_LINES = 30
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|ON\s+CONFLICT)\b", re.I | re.S)


def python_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.py")):
        if "migrations" not in path.parts:
            yield path


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """Every module `path` imports, at any depth (imports inside functions count too),
    with relative imports resolved against the file's package."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            yield node.lineno, base
            # `from jobs import handlers` / `from jobs.handlers import assets` name modules too
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def domain_files() -> Iterator[Path]:
    for path in python_files(ROOT / "yesgoddess"):
        if path.parent == ROOT / "yesgoddess" and path.name in PROJECT_WIRING:
            continue
        yield path


def framework_files() -> Iterator[Path]:
    for path in python_files(ROOT / "jobs"):
        if HANDLERS not in path.parents:
            yield path


def test_domain_never_imports_job_handlers_or_the_framework_internals():
    bad = [
        f"{where(path, line)} imports {module}"
        for path in domain_files()
        for line, module in imported_modules(path)
        if under(module, "jobs")
        and not any(under(module, allowed) for allowed in DOMAIN_MAY_IMPORT_FROM_JOBS)
        and module != "jobs"
    ]
    assert bad == []


def test_handlers_never_import_each_other():
    bad = []
    for path in python_files(HANDLERS):
        own = f"jobs.handlers.{path.stem}"
        for line, module in imported_modules(path):
            if under(module, "jobs.handlers") and module not in ("jobs.handlers", own) and not under(module, own):
                bad.append(f"{where(path, line)} imports {module}")
    assert bad == []


def test_framework_imports_no_domain_app():
    """The framework may use `yesgoddess.core` (infrastructure below the domain), nothing else."""
    bad = [
        f"{where(path, line)} imports {module}"
        for path in framework_files()
        for line, module in imported_modules(path)
        if under(module, "yesgoddess") and not under(module, "yesgoddess.core") and module != "yesgoddess"
    ]
    assert bad == []


def test_core_is_below_the_framework():
    bad = [
        f"{where(path, line)} imports {module}"
        for path in python_files(ROOT / "yesgoddess" / "core")
        for line, module in imported_modules(path)
        if under(module, "jobs")
    ]
    assert bad == []


def test_media_imports_no_django_and_no_other_app():
    bad = [
        f"{where(path, line)} imports {module}"
        for path in python_files(ROOT / "yesgoddess" / "media")
        for line, module in imported_modules(path)
        if under(module, "django")
        or (under(module, "yesgoddess") and not under(module, "yesgoddess.media"))
        or under(module, "jobs")
    ]
    assert bad == []


def test_every_registered_job_is_a_handler():
    outside = sorted(
        f"{spec.name}: {path}"
        for spec in JOBS.values()
        for path in (spec.path, spec.on_failure)
        if path and not path.startswith("jobs.handlers.") and not path.startswith("tests.")
    )
    assert outside == []


@pytest.mark.parametrize("path", sorted(python_files(HANDLERS)), ids=lambda p: p.name)
def test_handler_modules_are_thin_adapters(path: Path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_HANDLER_MODULE_LINES, f"{path.name} is over {MAX_HANDLER_MODULE_LINES} lines"
    assert not SQL.search(source), f"{path.name} holds SQL: the query belongs in its app"
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            body = node.body[1:] if ast.get_docstring(node) else node.body
            length = body[-1].end_lineno - body[0].lineno + 1
            assert length <= MAX_HANDLER_FUNCTION_LINES, f"{path.name}:{node.name} is {length} lines"
    connections = [m for _, m in imported_modules(path) if under(m, "django.db.connection")]
    assert connections == [], f"{path.name} opens its own database cursor"


def test_no_job_modules_left_beside_the_framework():
    """`jobs/` holds the framework; job functions live in `jobs/handlers/`."""
    framework = {
        "__init__",
        "admin",
        "alerts",
        "api",
        "apps",
        "cron_runs",
        "cron_table",
        "errors",
        "metrics",
        "models",
        "registry",
        "rq_classes",
        "runtime",
        "schedule",
        "scheduling",
        "telemetry",
        "views",
    }
    extra = sorted(p.stem for p in (ROOT / "jobs").glob("*.py") if p.stem not in framework)
    assert extra == []
