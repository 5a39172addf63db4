"""docs/architecture.md against the code: every module, every stage, the logits columns, the
report list, each module's ``__all__`` and the arrows the page promises.

The page is the map a new reader starts from; each check below fails with what is missing
from the page or from the code, so a moved module or a new stage cannot leave it behind.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from lorauq.schema import LETTERS, LOGITS_COLUMNS
from lorauq.stages.figures import FIGURES, TABLES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lorauq"
PAGE = ROOT / "docs" / "architecture.md"


def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


def _section(title: str) -> str:
    """The text of the section whose heading starts with ``title``, up to the next heading."""
    text = _page()
    start = text.index(title)
    following = re.search(r"^#{2,3} ", text[start + len(title) :], flags=re.MULTILINE)
    end = start + len(title) + following.start() if following else len(text)
    return text[start:end]


def _table_first_column(section: str) -> list[str]:
    """The first cell of every body row of the Markdown tables in ``section``."""
    cells = []
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith(("| ---", "|---")):
            cells.append(line.split("|")[1].strip())
    return cells[1:] if cells else cells


def _modules() -> list[str]:
    """Every module of the package as the page names it: ``tiny/world``, ``stages/infer``."""
    return sorted(str(p.relative_to(PACKAGE).with_suffix("")) for p in PACKAGE.rglob("*.py"))


def test_the_module_table_lists_every_module_and_no_other() -> None:
    listed = [cell.strip("`") for cell in _table_first_column(_section("## 3. The package"))]
    assert len(listed) == len(set(listed)), f"listed twice: {sorted(listed)}"
    assert sorted(listed) == _modules(), (
        f"not on the page: {sorted(set(_modules()) - set(listed))}; "
        f"not in lorauq/: {sorted(set(listed) - set(_modules()))}"
    )


def _public_definitions(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


def _declared_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return [ast.literal_eval(element) for element in node.value.elts]
    return None


@pytest.mark.parametrize("module", [m for m in _modules() if m != "__main__"])
def test_every_module_declares_exactly_its_public_names(module: str) -> None:
    """``__all__`` names every public top-level definition of the module and nothing else
    (``__main__`` is a command, not an API)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    declared = _declared_all(tree)
    assert declared is not None, f"lorauq/{module}.py has no __all__"
    assert len(declared) == len(set(declared)), f"lorauq/{module}.py: __all__ repeats a name"
    expected = _public_definitions(tree) | ({"__version__"} if module == "__init__" else set())
    assert set(declared) == expected, (
        f"lorauq/{module}.py: __all__ lacks {sorted(expected - set(declared))}, "
        f"names what it does not define {sorted(set(declared) - expected)}"
    )


def test_the_data_flow_diagram_has_every_stage() -> None:
    section = _section("## 2. Data flow")
    drawn = {name.split("@")[0] for name in re.findall(r"─> (\S+)", section)}
    stages = set(yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"])
    assert drawn == stages, f"not drawn: {stages - drawn}; not a stage: {drawn - stages}"
    assert {"method", "methods"} <= drawn  # the rival methods are part of the flow


def test_the_logits_table_is_the_stores_columns() -> None:
    columns: list[str] = []
    for cell in _table_first_column(_section("### 4.3 Logits store")):
        names = re.findall(r"`([^`]+)`", cell)
        if names == ["logit_a", "logit_j"]:  # written "logit_a … logit_j"
            names = [f"logit_{letter}" for letter in LETTERS]
        columns.extend(names)
    assert columns == LOGITS_COLUMNS


def test_the_report_list_is_what_the_figures_stage_writes() -> None:
    section = _section("### 4.6 Reports")
    paths = [re.findall(r"`([^`]+)`", cell) for cell in _table_first_column(section)]
    tables = {
        Path(p).stem for row in paths for p in row if re.fullmatch(r"reports/plots/\w+\.csv", p)
    }
    assert tables == set(TABLES), (set(TABLES) - tables, tables - set(TABLES))
    figures_row = next(line for line in section.splitlines() if "reports/figures/png/" in line)
    listed = set(re.findall(r"`(\w+)`", figures_row.split("|")[2]))
    assert listed == set(FIGURES), (set(FIGURES) - listed, listed - set(FIGURES))
    figures_stage = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"][
        "figures"
    ]
    declared = {Path(next(iter(entry))).stem for entry in figures_stage["plots"]}
    assert declared == set(TABLES)


def _lorauq_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lorauq"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lorauq"))
    return found


def _closure(module: str) -> set[str]:
    todo, seen = [module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        base = ROOT.joinpath(*name.split("."))
        for file in (base.with_suffix(".py"), base / "__init__.py"):
            if file.is_file():
                todo.extend(_lorauq_imports(file))
    return seen


@pytest.mark.parametrize(
    "module",
    ["model", "gguf", "lora", "checkpoints", "train", "joint", "readout", "infer", "store"],
)
def test_the_real_path_does_not_reach_the_tiny_world(module: str) -> None:
    reached = {m for m in _closure(f"lorauq.{module}") if m.startswith("lorauq.tiny")}
    assert not reached, f"lorauq.{module} imports {sorted(reached)}"


def test_uncertainty_imports_nothing_of_lorauq_but_errors_and_schema() -> None:
    assert _lorauq_imports(PACKAGE / "uncertainty.py") <= {"lorauq.errors", "lorauq.schema"}


def test_training_and_the_read_out_share_the_checkpoint_format_by_public_names() -> None:
    """``joint`` takes nothing private from another module (it did from ``train``)."""
    for module in ("joint", "train", "infer", "readout"):
        tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
        private = [
            f"{node.module}.{alias.name}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lorauq")
            for alias in node.names
            if alias.name.startswith("_")
        ]
        assert not private, f"lorauq/{module}.py imports private names {private}"
