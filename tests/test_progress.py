"""Progress for whoever watches: tqdm in JupyterLab and terminals, one stdout line under papermill."""

from __future__ import annotations

import re

import pytest
from tqdm.auto import tqdm

from lorauq.errors import ConfigError
from lorauq.progress import ENV, LineProgress, progress_bar, progress_mode, progress_note


def test_bars_by_default(monkeypatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert progress_mode() == "bars"
    bar = progress_bar(range(3), "work")
    assert isinstance(bar, tqdm) and not bar.disable
    assert list(bar) == [0, 1, 2]


def test_lines_print_one_line_after_the_loop(monkeypatch, capsys) -> None:
    monkeypatch.setenv(ENV, "lines")
    bar = progress_bar(range(4), "member 0 epoch 1/2")
    assert isinstance(bar, LineProgress)
    seen = []
    for item in bar:
        seen.append(item)
        bar.set_postfix(loss=f"{item / 10:.3f}", refresh=False)
        assert capsys.readouterr().out == ""  # nothing until the loop ends
    assert seen == [0, 1, 2, 3]
    captured = capsys.readouterr()
    assert re.fullmatch(r"member 0 epoch 1/2: 4 steps in \d+\.\d s, loss=0\.300\n", captured.out)
    assert captured.err == ""


def test_a_disabled_bar_is_silent_in_every_mode(monkeypatch, capsys) -> None:
    for mode in ("bars", "lines", "off"):
        monkeypatch.setenv(ENV, mode)
        assert list(progress_bar(iter("ab"), "quiet", enabled=False, unit="batches")) == ["a", "b"]
        progress_note("a note", enabled=False)
    assert capsys.readouterr() == ("", "")


def test_off_and_notes(monkeypatch, capsys) -> None:
    monkeypatch.setenv(ENV, "off")
    assert list(progress_bar(range(2), "x")) == [0, 1]
    progress_note("hidden")
    monkeypatch.setenv(ENV, "lines")
    progress_note("member 0 epoch 1: reusing part")
    assert capsys.readouterr() == ("member 0 epoch 1: reusing part\n", "")


def test_an_unknown_mode_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv(ENV, "widgets")
    with pytest.raises(ConfigError, match=r"LORAUQ_PROGRESS='widgets'.*bars, lines, off"):
        progress_bar(range(1), "x")


def test_a_notebook_kernel_draws_a_widget_not_stderr(monkeypatch) -> None:
    """In a kernel (as in JupyterLab) the default bar is an ipywidgets widget, no red text.

    Without ipywidgets tqdm.auto falls back to text on stderr and warns "IProgress not found".
    """
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv(ENV, raising=False)
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "from lorauq.progress import progress_bar\n"
            "for _ in progress_bar(range(3), 'pre-train tiny base'):\n    pass"
        )
    ]
    NotebookClient(notebook, kernel_name="python3", timeout=120).execute()
    outputs = notebook.cells[0].outputs
    assert [o for o in outputs if o.get("name") == "stderr"] == []
    widgets = [
        o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(widgets) == 1
    assert widgets[0]["data"]["text/plain"].startswith("pre-train tiny base:")
