"""The numbered notebooks: each paired with its percent-format script, parameters documented.

Each ``notebooks/NN_*.ipynb`` has a Jupytext twin ``NN_*.py`` (``notebooks/jupytext.toml``):
JupyterLab with jupytext installed writes both on every save, an editor changes the ``.py`` and
``jupytext --sync`` carries it over. The pair must hold the same cells, and the ``.ipynb`` is
committed without outputs (executed copies are DVC outputs in reports/notebooks/).

``papermill --help-notebook`` reads each parameter's type from its annotation and its help from
the comment on the same line; a line it cannot parse is silently left out of the help.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupytext.config import (
    find_jupytext_configuration_file,
    load_jupytext_configuration_file,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED = {
    "01_base.ipynb": {"params_file", "overrides", "root"},
    "02_finetune.ipynb": {"params_file", "overrides", "root", "ensemble", "members"},
    "03_inference.ipynb": {"params_file", "overrides", "root", "ensemble", "members"},
    "04_figures.ipynb": {"params_file", "overrides", "root"},
}


def test_every_numbered_notebook_is_known() -> None:
    assert [p.name for p in NOTEBOOKS] == sorted(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_parameter_has_a_type_and_help(path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="papermill"):
        inferred = papermill.inspect_notebook(str(path))
    assert not [r.message for r in caplog.records if "Unable to parse" in r.message]
    assert set(inferred) == EXPECTED[path.name]
    for name, parameter in inferred.items():
        assert parameter["help"].strip(), f"{path.name}: parameter {name!r} has no help comment"
        assert parameter["inferred_type_name"] in {"str", "dict", "int"}, (name, parameter)


def test_help_notebook_command_lists_each_parameter_with_its_help() -> None:
    path = ROOT / "notebooks" / "02_finetune.ipynb"
    done = subprocess.run(
        [sys.executable, "-m", "papermill", "--help-notebook", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert 'members: str (default "0") the stage: a member id, or a range like 0-4' in out
    assert 'ensemble: str (default "lora_l2")' in out
    assert 'root: str (default "")' in out
    assert "Unknown type" not in out


def _cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    """What a pair must agree on: each cell's type, source and tags (ids and outputs aside)."""
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in notebook.cells]


def test_the_folder_pairs_every_notebook_with_a_percent_script() -> None:
    found = find_jupytext_configuration_file(str(ROOT / "notebooks"))
    assert Path(found) == ROOT / "notebooks" / "jupytext.toml"
    assert load_jupytext_configuration_file(found).formats == ["ipynb,py:percent"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_and_its_script_hold_the_same_cells(path: Path) -> None:
    script = path.with_suffix(".py")
    assert script.read_text().count("# %%") == len(nbformat.read(path, as_version=4).cells)
    committed = jupytext.read(path)
    assert _cells(committed) == _cells(jupytext.read(script))
    tagged = [c for c in committed.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    assert all(not c.get("outputs") for c in committed.cells if c.cell_type == "code")
    assert all(c.get("execution_count") is None for c in committed.cells if c.cell_type == "code")
    assert committed.metadata["kernelspec"]["name"] == "python3"


def test_saving_in_jupyterlab_updates_the_paired_script(tmp_path: Path) -> None:
    """JupyterLab saves through its contents manager; jupytext's derives from the default one."""
    folder = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", folder)
    manager = jupytext.build_async_jupytext_contents_manager_class(AsyncLargeFileManager)(
        root_dir=str(folder)
    )
    name = "02_finetune.ipynb"
    before = (folder / "02_finetune.py").read_text()

    async def edit_and_save() -> None:
        model = await manager.get(name)
        cells = model["content"]["cells"]
        cells[-1]["source"] += "\n# edited in JupyterLab"
        cells.append(nbformat.v4.new_markdown_cell("A note added in JupyterLab."))
        await manager.save(model, name)

    asyncio.run(edit_and_save())
    after = (folder / "02_finetune.py").read_text()
    assert after != before
    assert after.endswith(
        '.set_index(["member", "epoch"])\n# edited in JupyterLab\n\n'
        "# %% [markdown]\n# A note added in JupyterLab.\n"
    )
    assert _cells(jupytext.read(folder / "02_finetune.py")) == _cells(jupytext.read(folder / name))
    # The rest of the script is untouched: only the edited cell and the new one differ.
    assert after.startswith(before.rstrip("\n"))


def _outputs(path: Path) -> list[dict]:
    return [
        out for cell in nbformat.read(path, as_version=4).cells for out in cell.get("outputs", [])
    ]


def _text(output: dict) -> str:
    if output["output_type"] == "stream":
        return output["text"]
    if output["output_type"] == "error":
        return "\n".join([output["ename"], output["evalue"], *output["traceback"]])
    return str(output.get("data", {}).get("text/plain", ""))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    """A copy of the repository after ``dvc repro`` of the QUICK experiment (about 1.5 min)."""
    from workspace import QUICK, copy_repository, sh

    repo = copy_repository(tmp_path_factory.mktemp("quick") / "repo", QUICK)
    sh(repo, "dvc", "repro", timeout=1500)
    return repo


@pytest.mark.slow
def test_executed_notebooks_hold_no_stderr_and_no_warnings(quick_run: Path) -> None:
    """``dvc repro`` runs every notebook as its stage does: progress as stdout lines, no red."""
    repo = quick_run
    executed = {p.name: _outputs(p) for p in (repo / "reports" / "notebooks").glob("*.ipynb")}
    assert sorted(executed) == [
        "01_base.ipynb",
        "02_finetune-lora_l2-0.ipynb",
        "02_finetune-lora_l2-1.ipynb",
        "03_inference-lora_l2-0.ipynb",
        "03_inference-lora_l2-1.ipynb",
        "03_inference-prior.ipynb",
        "04_figures.ipynb",
    ]
    for name, outputs in executed.items():
        stderr = [o["text"] for o in outputs if o.get("name") == "stderr"]
        assert not stderr, f"{name}: stderr output {stderr[:3]}"
        assert not [o for o in outputs if o["output_type"] == "error"], name
        warned = [_text(o) for o in outputs if "Warning" in _text(o)]
        assert not warned, f"{name}: {warned[:3]}"
    stdout = {
        name: "".join(o["text"] for o in outs if o.get("name") == "stdout")
        for name, outs in executed.items()
    }
    assert re.search(
        r"^pre-train tiny base: 20 steps in [\d.]+ s, loss=", stdout["01_base.ipynb"], re.M
    )
    assert re.search(
        r"^member 1 epoch 1/1: \d+ steps in [\d.]+ s, loss=",
        stdout["02_finetune-lora_l2-1.ipynb"],
        re.M,
    )
    for eval_set in ("in_domain", "known", "unseen", "noisy"):
        assert re.search(
            rf"^member 0 epoch 1 {eval_set}: \d+ batches in [\d.]+ s$",
            stdout["03_inference-lora_l2-0.ipynb"],
            re.M,
        ), stdout["03_inference-lora_l2-0.ipynb"]
    # Figures inline, drawn from the objects the plotting code returns.
    images = [o for o in executed["04_figures.ipynb"] if "image/png" in o.get("data", {})]
    assert len(images) >= 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rendered(folder: Path, notebooks: list[str], tmp: Path) -> dict[str, str]:
    """Each notebook's page as headless Chromium renders it in a JupyterLab serving ``folder``."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium binary (Debian: apt-get install chromium)")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")}
    lab = subprocess.Popen(
        [
            *(sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root"),
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={folder}",
            f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # JupyterLab answers its API once it serves
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5
                )
                break
            except OSError:
                assert lab.poll() is None, "JupyterLab exited at start-up"
                assert time.monotonic() < deadline, "JupyterLab did not start within 120 s"
                time.sleep(1)
        pages = {}
        for name in notebooks:
            done = subprocess.run(
                [
                    *(browser, "--headless=new", "--no-sandbox", "--disable-gpu"),
                    "--disable-dev-shm-usage",
                    f"--user-data-dir={tmp / 'chromium'}",
                    "--virtual-time-budget=30000",  # let JupyterLab's scripts render the outputs
                    "--dump-dom",
                    f"http://127.0.0.1:{port}/lab/tree/{name}?token={token}",
                ],
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.returncode == 0, done.stderr[-2000:]
            pages[name] = done.stdout
        return pages
    finally:
        lab.terminate()
        lab.wait(timeout=30)


def _headings(page: str) -> list[str]:
    return [re.sub(r"<[^>]+>|¶", "", h).strip() for h in re.findall(r"<h1[^>]*>(.*?)</h1>", page)]


@pytest.mark.slow
def test_an_executed_notebook_renders_in_a_real_browser(quick_run: Path, tmp_path: Path) -> None:
    """JupyterLab in headless Chromium: the title, the figures, no red output.

    A control notebook with a stderr line and an exception shows that red output is seen.
    """
    folder = quick_run / "reports" / "notebooks"
    control = nbformat.v4.new_notebook()
    control.cells = [
        nbformat.v4.new_markdown_cell("# Control"),
        nbformat.v4.new_code_cell(
            "1/0",
            outputs=[
                nbformat.v4.new_output("stream", name="stderr", text="a warning\n"),
                nbformat.v4.new_output(
                    "error", ename="ZeroDivisionError", evalue="division by zero", traceback=[]
                ),
            ],
        ),
    ]
    nbformat.write(control, folder / "control.ipynb")
    pages = _rendered(folder, ["04_figures.ipynb", "control.ipynb"], tmp_path)

    stderr = 'data-mime-type="application/vnd.jupyter.stderr"'
    assert pages["control.ipynb"].count(stderr) == 2
    assert "Control" in _headings(pages["control.ipynb"])

    page = pages["04_figures.ipynb"]
    title = nbformat.read(folder / "04_figures.ipynb", as_version=4).cells[0].source
    assert title.splitlines()[0].removeprefix("# ") in _headings(page)
    images = re.findall(r'<img src="data:image/png;base64,', page)
    drawn = [o for o in _outputs(folder / "04_figures.ipynb") if "image/png" in o.get("data", {})]
    assert len(images) == len(drawn) >= 5
    assert stderr not in page
