"""Which ``lorauq`` files a module runs: the import walker that DVC stage deps are built from.

A stage's deps are exactly the modules it executes (docs/architecture.md), so a code change
reruns exactly the stages that run it. The walker reads source, not a live interpreter: every
``import`` and ``from … import`` anywhere in a file counts (a lazy import inside a function
runs too), closed over what those modules import, with the packages' ``__init__`` files.
``tests/test_stage_deps.py`` checks every stage of ``dvc.yaml`` with it, and
:mod:`lorauq.methods.pipeline` writes the method stage's deps with it.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PACKAGE", "ROOT", "imports", "module_closure", "module_file", "notebook_imports"]

PACKAGE = "lorauq"
#: The repository root: the folder that holds the package.
ROOT = Path(__file__).resolve().parents[1]


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The file of ``lorauq.x.y`` (module or package) under ``root``, or None if it is not
    one of ours."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports(source: str, filename: str) -> set[str]:
    """Every module an ``import`` or ``from … import`` anywhere in ``source`` may load.

    ``from lorauq.stages import figures`` may name a submodule: both the package and
    ``lorauq.stages.figures`` are returned, and the caller keeps the ones that are files.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def module_closure(entry_imports: Iterable[str], root: Path = ROOT) -> set[Path]:
    """The files of every ``lorauq`` module under ``root`` reachable from ``entry_imports``."""
    todo = [m for name in entry_imports for m in _with_parents(name)]
    seen: set[Path] = set()
    while todo:
        file = module_file(todo.pop(), root)
        if file is None or file in seen:
            continue
        seen.add(file)
        for name in imports(file.read_text(encoding="utf-8"), str(file)):
            todo.extend(_with_parents(name))
    return seen


def notebook_imports(path: Path) -> set[str]:
    """The imports of a notebook's code cells (IPython magics are not Python)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = "\n".join(
        line
        for cell in cells
        if cell["cell_type"] == "code"
        for line in "".join(cell["source"]).splitlines()
        if not line.lstrip().startswith(("%", "!"))
    )
    return imports(code, str(path))
