"""No import runs upward: each rule names a lower layer and the higher modules it must not import. And a task is
its package and its scorer: no other module imports or names it (the seam a new task plugs into).

Every ``import`` and ``from ... import`` statement of benchmark/, tasks/ and pretrain/ counts, at
module level or inside a function (a lazy import is still an arrow), ``TYPE_CHECKING`` ones included.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "tasks", "pretrain")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _targets(node: ast.AST, known: dict[str, Path]) -> list[str]:
    """Modules an import statement names: ``from a.b import c`` is ``a.b``, and ``a.b.c`` when c is a module."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in known]
    return []


@cache
def arrows() -> list[tuple[str, str, str]]:
    """(importer, imported, where) for every import of a module of this tree by another."""
    known = modules()
    found = []
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, known):
                if target.split(".")[0] in PACKAGES and target != name:
                    found.append((name, target, f"{path.relative_to(ROOT)}:{node.lineno}"))
    return found


def within(module: str, *packages: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def _task_package(module: str) -> str | None:
    """``detection`` for ``tasks.detection.features``; None for ``tasks``, ``tasks.registry``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "tasks" and parts[1] != "registry" else None


def _command(module: str) -> str | None:
    """The verb module of ``benchmark.commands.X``; None for the package and the shared arguments module."""
    parts = module.split(".")
    shared = len(parts) < 3 or parts[2] == "arguments"
    return None if shared or parts[:2] != ["benchmark", "commands"] else parts[2]


GRID_ORDER = {"request": 0, "planning": 1, "dry_run": 2, "cell": 2, "isolation": 3, "loop": 4}


def _grid_rank(module: str) -> int | None:
    parts = module.split(".")
    return GRID_ORDER.get(parts[2]) if len(parts) > 2 and parts[:2] == ["benchmark", "grid"] else None


@dataclass(frozen=True)
class Rule:
    name: str
    upward: Callable[[str, str], bool]  # (importer, imported) -> the arrow runs the wrong way


RULES = {rule.name: rule for rule in [
    Rule("grid planning and request do not import the cell, isolation or loop",
         lambda a, b: within(a, "benchmark.grid.planning", "benchmark.grid.request")
         and within(b, "benchmark.grid.loop", "benchmark.grid.isolation", "benchmark.grid.cell")),
    Rule("a grid module imports only modules below it (request < planning < dry_run, cell < isolation < loop)",
         lambda a, b: _grid_rank(a) is not None and _grid_rank(b) is not None and _grid_rank(b) >= _grid_rank(a)),
    Rule("executors do not re-enter through the CLI",
         lambda a, b: within(a, "benchmark.executors") and within(b, "benchmark.cli", "benchmark.commands")),
    Rule("a verb imports no other verb and not the CLI",
         lambda a, b: _command(a) is not None and (within(b, "benchmark.cli") or _command(b) not in (None, _command(a)))),
    Rule("the board imports no task and not the grid",
         lambda a, b: within(a, "benchmark.board") and within(b, "tasks", "benchmark.grid")),
    Rule("a task imports no other task (tasks.registry is shared)",
         lambda a, b: _task_package(a) is not None and _task_package(b) not in (None, _task_package(a))),
    Rule("data, backbones, scoring and heads import nothing above them",
         lambda a, b: within(a, "benchmark.data", "benchmark.backbones", "benchmark.scoring", "benchmark.heads")
         and within(b, "tasks", "benchmark.board", "benchmark.grid", "benchmark.commands", "benchmark.cli")),
]}


def _case(name: str) -> object:
    return pytest.param(name, id=name.split(" (")[0].replace(" ", "-"))


@pytest.mark.parametrize("rule", [_case(name) for name in RULES])
def test_no_import_runs_upward(rule: str) -> None:
    wrong = [f"{where}: {a} imports {b}" for a, b, where in arrows() if RULES[rule].upward(a, b)]
    assert not wrong, f"{rule}:\n" + "\n".join(wrong)


def test_the_scanner_sees_lazy_and_type_checking_imports() -> None:
    """The rules are only as good as the scan: function-level and TYPE_CHECKING imports are arrows too."""
    found = {(a, b) for a, b, _ in arrows()}
    assert ("benchmark.commands.run", "benchmark.grid.dry_run") in found  # inside a function
    assert ("benchmark.executors", "benchmark.grid") in found  # under TYPE_CHECKING and inside run_shard
    assert ("benchmark.grid.loop", "benchmark.grid.planning") in found  # module level


# The seam a task plugs into: the suite finds task packages and scorers by scanning (tasks.registry.task_packages,
# benchmark.scoring.scorer) and reads task names from a board's protocol, so no other module needs to import or name
# one. The exceptions, each with its reason:
TASK_IMPORTERS = {"benchmark/selftest.py": "the self-test's two-process check runs one segmentation cell under torchrun"}
TASK_NAMERS = {"benchmark/published.py": "the published tables name the tasks of their columns (data)"}


def _code_strings(path: Path) -> list[ast.Constant]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_a_task_is_imported_only_by_its_package_and_its_scorer_only_by_task_and_scoring_modules() -> None:
    from tasks.registry import task_packages

    wrong = []
    for task in task_packages():
        for a, b, where in arrows():
            if within(b, f"tasks.{task}") and not within(a, f"tasks.{task}") and not where.startswith(tuple(TASK_IMPORTERS)):
                wrong.append(f"{where}: {a} imports the task package {b}")
            if b == f"benchmark.scoring.{task}" and not within(a, "tasks", "benchmark.scoring"):
                wrong.append(f"{where}: {a} imports the scorer {b} (the core reaches it through benchmark.scoring.scorer)")
    assert not wrong, "\n".join(wrong)


def test_a_task_is_named_only_in_its_package_its_scorer_and_the_published_tables() -> None:
    """For the tasks whose name is not also a partition's: a dataset's partitions are named after the task whose
    splits they hold ("classification", "detection", "segmentation"), so those literals are data-layer names too."""
    import benchmark.data.datasets  # noqa: F401 (registers the datasets)
    from benchmark.data.registry import DATASETS
    from tasks.registry import task_packages

    partitions = {partition for dataset in DATASETS.names() for partition in DATASETS.get(dataset).partitions}
    named_alone = [task for task in task_packages() if task not in partitions]
    assert {"zeroshot", "retrieval"} <= set(named_alone)
    wrong = []
    for task in named_alone:
        homes = (f"tasks/{task}/", f"benchmark/scoring/{task}.py", *TASK_NAMERS)
        for path in modules().values():
            where = str(path.relative_to(ROOT))
            if not where.startswith(homes):
                wrong += [f"{where}:{node.lineno}: names the task {task!r}" for node in _code_strings(path) if node.value == task]
    assert not wrong, "\n".join(wrong)
