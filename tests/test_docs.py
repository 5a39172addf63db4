"""The README and docs/ cannot drift from the code: their snippets run, their names exist.

Every fenced ``python`` block of README.md and ``docs/*.md`` runs in a fresh interpreter
(those marked ``<!-- snippet: needs dvc repro -->`` in the root of a finished, shrunken default
experiment, in the slow tier). Every ``make`` target, script and option, ``python -m`` module,
DVC stage, papermill parameter, params key, ``-S key=value`` set, lorauq name, repository path
and relative link the pages give must exist (``docscan`` says what counts as each). The last
tests plant drift in a page and check that each kind is caught, and that placeholders and the
authors' paths are not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import docscan
import pytest
from docscan import NEEDS_RUN, ROOT
from workspace import QUICK

#: Pages another part of the project is rewriting, with what is known to be wrong there; the
#: mark is strict, so the test fails as soon as the page is right and the entry must go.
REWRITTEN_ELSEWHERE: dict[str, str] = {}


def _param(value: object, page: str, name: str):
    """A test case of a page, expected to fail (strictly) while the page is rewritten elsewhere."""
    reason = REWRITTEN_ELSEWHERE.get(page)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(value, id=name, marks=marks)


PAGES = [_param(page, page, page) for page in docscan.pages()]


def _snippet_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }


def _run_snippet(block: docscan.Block, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", block.text],
        cwd=cwd,
        env=_snippet_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _snippet_param(block: docscan.Block):
    return _param(block, block.page, f"{block.page}:{block.line}")


SNIPPETS = [_snippet_param(b) for b in docscan.python_blocks() if NEEDS_RUN not in b.marker]
RUN_SNIPPETS = [_snippet_param(b) for b in docscan.python_blocks() if NEEDS_RUN in b.marker]


def test_the_pages_have_snippets_of_both_kinds() -> None:
    """The parametrisations below are not empty: the parser finds the pages' blocks."""
    assert len(SNIPPETS) >= 2
    assert [p.values[0].page for p in RUN_SNIPPETS] == ["README.md"]


@pytest.mark.parametrize("block", SNIPPETS)
def test_python_snippet_runs(block: docscan.Block, tmp_path: Path) -> None:
    done = _run_snippet(block, tmp_path)
    assert done.returncode == 0, f"{block.page}:{block.line}:\n{block.text}\n{done.stderr}"


@pytest.mark.parametrize("page", PAGES)
def test_every_name_a_page_gives_exists(page: str) -> None:
    findings, _ = docscan.page_findings(page)
    assert not findings, "\n".join(findings)


@pytest.mark.parametrize("page", docscan.pages())
def test_every_link_leads_somewhere(page: str) -> None:
    findings = docscan.link_findings(page)
    assert not findings, "\n".join(findings)


def test_every_page_is_in_the_readme_s_documentation_index() -> None:
    """A page nobody links to is a page nobody reads, and nobody keeps up."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    index = readme.split("## Documentation", 1)[1].split("\n## ", 1)[0]
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", index))
    pages = set(docscan.pages()) - {"README.md"}
    assert len(pages) >= 10
    assert sorted(pages - linked) == []


def test_every_documented_override_composes_and_loads(tmp_path: Path) -> None:
    """Each ``dvc exp run -S …`` the pages show gives a params.yaml lorauq accepts."""
    shown = {
        tuple(sets): page for page in docscan.pages() for sets in docscan.page_findings(page)[1]
    }
    assert len(shown) >= 10  # the profiles, gpu, paper, precision and methods pages
    failures = []
    for n, (sets, page) in enumerate(sorted(shown.items())):
        error = docscan.override_error(list(sets), tmp_path / str(n))
        if error:
            failures.append(f"{page}: -S {' -S '.join(sets)}: {error}")
    assert not failures, "\n".join(failures)


# --- the checks catch drift, and leave placeholders and prose alone ---------------------------

PLANTED = """\
# A page that drifted

Run `make nosuch`, then `python scripts/nosuch.py` and `python scripts/gpu_check.py --nosuch`.
`tiny.train.epoch` and `paper.base.dtype: bfloat16`, `train.jont` and `uncertainty.nope`.
`lorauq.nosuch.thing`, in prose lorauq.joint.nothing_here; `docs/nosuch.md` and docs/gone.md.
`dvc repro finetune@nosuch-0`, `method@nosuch`, `finetune@3`, `test_nosuch_thing`.

```bash
python -m lorauq.nosuch
python -m lorauq params
python -m benchmarks.run --nosuch
bash scripts/gpu_evidence.sh --nosuch
papermill notebooks/02_finetune.ipynb o.ipynb -p nosuch 1 -y '{overrides: {train.epoch: 3}}'
dvc repro nostage
pip install -r requirements-nosuch.txt
```

```
params.yaml ─┬─> prepare   python -m lorauq prepare   data/prepared/
             └─> figures   notebooks/04_figures.ipynb   reports/
```
"""

CAUGHT = [
    "`make nosuch`: no such target",
    "`scripts/nosuch.py`: no such script",
    "path `scripts/nosuch.py` is neither",
    "`scripts/gpu_check.py` has no option `--nosuch`",
    "params key `tiny.train.epoch` is not in params.yaml",
    "`paper.base.dtype: bfloat16` but params.yaml has paper.base.dtype: 'float32'",
    "`train.jont` is neither a params key nor a lorauq name",
    "`uncertainty.nope` is neither a params key nor a lorauq name",
    "`lorauq.nosuch.thing` does not import",
    "`lorauq.joint.nothing_here` does not import",
    "path `docs/nosuch.md` is neither",
    "path `docs/gone.md` is neither",
    "`finetune@nosuch-0`: no ensemble `nosuch`",
    "`method@nosuch`: no method `nosuch`",
    "`finetune@3` is not `finetune@<ensemble>-<members>`",
    "no test function `test_nosuch_thing` in tests/",
    "`python -m lorauq.nosuch`: no such module",
    "`python -m lorauq params`: no such subcommand",
    "`benchmarks/run.py` has no option `--nosuch`",
    "`scripts/gpu_evidence.sh` has no option `--nosuch`",
    "notebooks/02_finetune.ipynb has no parameter `nosuch`",
    "override `train.epoch` is not a params key",
    "`dvc repro nostage`: no stage `nostage`",
    "path `requirements-nosuch.txt` is neither",
    "the pipeline diagram shows stages ['figures', 'prepare']",
]

CLEAN = """\
Placeholders: `data/adapters/<ensemble>/members-<stage>/member-<m>/epoch-<e>/`, `method@NAME`,
`data/adapters/E/members-S/`, `finetune@<ensemble>-<m>`, `dvc exp run -S <key>=<value>`,
`python scripts/gpu_check.py --json PATH`, `make repro`, `tiny.train.epochs`, `train.joint`,
`data.eval.<name>`, `lorauq.joint.train_members`, `uncertainty.nll`, `paper.base.dtype: float32`,
`test_two_runs_are_bitwise_identical`, `tests/test_docs.py`, `anatomy_test.csv`.
Not ours: lib/models/mistral_generative.py, `cais/mmlu`, `torch.compile`, 0.5/1, `base.json`,
`MistralGenerative.lora_l2_loss`, `git show b73d0ab:experiments/x.ipynb`.
"""


def test_planted_drift_is_caught() -> None:
    findings, _ = docscan.page_findings("docs/planted.md", PLANTED)
    text = "\n".join(findings)
    missed = [expected for expected in CAUGHT if expected not in text]
    assert not missed, f"not caught: {missed}\nfindings:\n{text}"
    assert len(findings) == len(CAUGHT), text  # one finding each, nothing else


def test_placeholders_and_prose_are_not_flagged() -> None:
    findings, overrides = docscan.page_findings("docs/clean.md", CLEAN)
    assert findings == []
    assert overrides == [["<key>=<value>"]]


def test_a_wrong_override_is_refused(tmp_path: Path) -> None:
    assert docscan.override_error(["tiny.train.epoch=3"], tmp_path / "a") is not None
    assert "bfloat16" in docscan.override_error(["paper.base.dtype=bf16"], tmp_path / "b")
    assert docscan.override_error(["paper.base.dtype=bfloat16"], tmp_path / "c") is None


def test_links_to_missing_files_and_headings_are_caught(tmp_path: Path, monkeypatch) -> None:
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    (tmp_path / "README.md").write_text("# Title\n\n## Quick start\n", encoding="utf-8")
    page.write_text(
        "[a](../README.md#quick-start) [b](../README.md#slow-start) [c](gone.md) "
        "[d](https://example.org/x) ![e](../README.md)\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(docscan, "ROOT", tmp_path)
    assert docscan.link_findings("docs/page.md") == [
        "docs/page.md:1: link `../README.md#slow-start`: no heading `#slow-start`",
        "docs/page.md:1: link `gone.md` leads nowhere",
    ]


# --- the slow tier: what needs a finished run -------------------------------------------------

#: The notebooks' quick experiment with the default run's member stage (members 0-4 in one
#: stage) and every method, so the paths the pages name are the default run's.
SHRUNK = {
    **QUICK,
    "tiny.members": ["0-4"],
    "tiny.methods.mc_dropout.passes": 2,
    "tiny.methods.laplace.samples": 2,
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A copy of the repository after ``dvc repro`` of the shrunken default experiment."""
    from workspace import reproduced_copy

    return reproduced_copy(tmp_path_factory.mktemp("docs") / "repo", SHRUNK)


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN_SNIPPETS)
def test_python_snippet_runs_in_a_finished_experiment(
    block: docscan.Block, finished_run: Path
) -> None:
    done = _run_snippet(block, finished_run)
    assert done.returncode == 0, f"{block.page}:{block.line}:\n{block.text}\n{done.stderr}"


@pytest.mark.slow
def test_every_output_path_a_page_names_is_written(finished_run: Path) -> None:
    """Each ``data/…`` or ``reports/…`` output a page names is there after ``dvc repro``."""
    named = docscan.output_paths()
    assert len(named) >= 30
    missing = [
        f"{where}: {path}"
        for where, path in named
        if not any(
            any(finished_run.glob(variant.strip("/")))
            for variant in docscan.expand_braces(docscan.to_glob(path))
        )
        and not path.rstrip("/").split("/")[-1].startswith(".")  # temporary, gone when done
    ]
    assert not missing, "\n".join(missing)
