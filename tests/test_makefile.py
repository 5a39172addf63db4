"""The Makefile's routes, run for real against a fake ``.venv``: what each target installs, in
which order it checks and runs, and what environment ``dvc`` sees.

The Makefile is copied beside the requirements files, ``params.yaml`` and ``compose.yaml`` into
a temporary folder whose ``.venv/bin`` holds stand-ins for ``pip``, ``dvc`` and ``python`` that
record their command lines (and, for ``dvc``, the hub settings) in a log. The stand-in
``python`` runs the real ``python -m lorauq.preflight``, against a stand-in ``torch`` module
where a test needs one, so the checks, the profile switch and their messages are lorauq's own.
Nothing is installed and no stage runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from workspace import without_outer_make

from lorauq.compose import compose_params

ROOT = Path(__file__).resolve().parents[1]
COPIED = (
    "Makefile",
    "pyproject.toml",
    "params.yaml",
    "compose.yaml",
    *(p.name for p in ROOT.glob("requirements*.txt")),
)
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

RECORDER = """#!/usr/bin/env bash
printf '%s\\n' "$(basename "$0") $*" >> "$FAKE_LOG"
"""
PIP = (
    RECORDER
    + """while [ $# -gt 0 ]; do
  if [ "$1" = -c ]; then printf 'constraint %s\\n' "$(cat "$2")" >> "$FAKE_LOG"; fi
  shift
done
"""
)
DVC = (
    RECORDER
    + """printf 'dvc-env HF_HUB_OFFLINE=%s HF_DATASETS_OFFLINE=%s HF_HOME=%s HF_TOKEN=%s\\n' \\
  "${HF_HUB_OFFLINE-}" "${HF_DATASETS_OFFLINE-}" "${HF_HOME-}" "${HF_TOKEN-}" >> "$FAKE_LOG"
"""
)
PYTHON = (
    RECORDER
    + """if [ "$1 $2" = "-m lorauq.preflight" ]; then
  PYTHONPATH="$FAKE_TORCH:$REPO" exec "$REAL_PYTHON" "$@"
fi
if [ "$1" = "-c" ]; then echo "torch==$FAKE_TORCH_VERSION"; fi
"""
)
TORCH = """__version__ = {version!r}
class version:
    cuda = {cuda!r}
class cuda:
    @staticmethod
    def is_available():
        return {available!r}
"""


def _torch(folder: Path, version: str, cuda: str | None, available: bool) -> Path:
    """A stand-in ``torch`` package: its version, CUDA build and whether it sees a GPU."""
    package = folder / "torch"
    package.mkdir(parents=True)
    text = TORCH.format(version=version, cuda=cuda, available=available)
    (package / "__init__.py").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The Makefile and the files its targets read, with a recording ``.venv``."""
    for name in COPIED:
        shutil.copy(ROOT / name, tmp_path / name)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in {"pip": PIP, "dvc": DVC, "python": PYTHON}.items():
        (bin_dir / name).write_text(text, encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    return tmp_path


def _make(project: Path, *args: str, torch: Path | None = None, **env: str):
    """``make ARGS`` in ``project`` with a clean hub and git environment plus ``env``; returns
    the completed process and the stand-ins' log lines."""
    home = project / "home"
    home.mkdir(exist_ok=True)
    base = {
        k: v
        for k, v in without_outer_make().items()
        if not k.startswith(("HF_", "GIT_")) and k != "TORCH_INDEX"
    }
    base.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(home / "gitconfig"),
        FAKE_LOG=str(project / "log"),
        FAKE_TORCH=str(torch or project / "no-torch"),
        FAKE_TORCH_VERSION="2.13.0+cu124",
        REAL_PYTHON=sys.executable,
        REPO=str(ROOT),
    )
    base.update(env)
    done = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=project,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = project / "log"
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return done, lines


def _index(lines: list[str], start: str) -> int:
    """Where the first log line starting with ``start`` is (it must be there)."""
    found = [n for n, line in enumerate(lines) if line.startswith(start)]
    assert found, f"no {start!r} in:\n" + "\n".join(lines)
    return found[0]


IDENTITY = {
    "GIT_AUTHOR_NAME": "A",
    "GIT_AUTHOR_EMAIL": "a@example.org",
    "GIT_COMMITTER_NAME": "A",
    "GIT_COMMITTER_EMAIL": "a@example.org",
}


def test_repro_installs_the_cpu_torch_and_runs_the_default_offline(project: Path) -> None:
    done, lines = _make(project, "repro", HF_HOME="/users/hub-cache")
    assert done.returncode == 0, done.stderr
    torch_line = lines[_index(lines, "pip install")]
    assert f"--extra-index-url {CPU_INDEX}" in torch_line
    assert torch_line.endswith("torch==2.13.0")
    order = [
        _index(lines, "pip install -q -r requirements-cpu.txt"),
        _index(lines, "pip install -q --no-deps -r requirements-laplace.txt"),
        _index(lines, "python -m lorauq.preflight profile tiny"),
        _index(lines, "dvc repro"),
        _index(lines, "dvc metrics show"),
    ]
    assert order == sorted(order)
    # offline, and the hub cache the user's own (the same one a plain `dvc repro` uses)
    assert lines[order[3] + 1] == (
        "dvc-env HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=/users/hub-cache HF_TOKEN="
    )
    assert "params.yaml: profile tiny" in done.stdout


def test_torch_index_can_be_left_out(project: Path) -> None:
    done = subprocess.run(
        ["make", "-n", "setup", "TORCH_INDEX="],
        cwd=project,
        env=without_outer_make(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    (torch_line,) = [line for line in done.stdout.splitlines() if "torch==" in line]
    assert "--extra-index-url" not in torch_line and "pip install" in torch_line


def test_repro_after_smol_switches_params_back_to_the_default(project: Path) -> None:
    compose_params(project, ["profile=smol"])
    assert "profile: smol" in (project / "params.yaml").read_text(encoding="utf-8")
    done, lines = _make(project, "repro")
    assert done.returncode == 0, done.stderr
    assert "selected profile 'smol'" in done.stdout
    assert "switched it back to 'tiny'" in done.stdout
    assert "dvc exp run -S profile=smol" in done.stdout  # how to run smol again
    # byte for byte the committed default, so dvc.lock's params match again
    assert (project / "params.yaml").read_bytes() == (ROOT / "params.yaml").read_bytes()
    assert _index(lines, "python -m lorauq.preflight") < _index(lines, "dvc repro")


def test_paper_keeps_the_cuda_torch_and_the_user_s_hub(project: Path) -> None:
    torch = _torch(project / "cuda-torch", "2.13.0+cu124", "12.4", True)
    done, lines = _make(
        project, "paper", torch=torch, HF_TOKEN="hf_user", HF_HOME="/users/hub-cache", **IDENTITY
    )
    assert done.returncode == 0, done.stderr
    assert "torch 2.13.0+cu124 with CUDA: kept" in done.stdout
    pip = [line for line in lines if line.startswith("pip")]
    assert not [line for line in pip if "requirements-cpu" in line or "torch==" in line]
    order = [
        _index(lines, "python -m lorauq.preflight cuda-torch"),
        _index(lines, "pip install -q -r requirements.txt -c /dev/fd/"),
        _index(lines, "constraint torch==2.13.0+cu124"),  # the installed torch, held
        _index(lines, "pip install -q --no-deps -e ."),
        _index(lines, "python -m lorauq.preflight git-identity"),
        _index(lines, "dvc exp run -S profile=paper"),
    ]
    assert order == sorted(order)
    # the hub as the user's shell has it: online, their token, their cache
    assert lines[order[-1] + 1] == (
        "dvc-env HF_HUB_OFFLINE= HF_DATASETS_OFFLINE= HF_HOME=/users/hub-cache HF_TOKEN=hf_user"
    )


@pytest.mark.parametrize(
    ("version", "cuda", "available", "message"),
    [
        ("2.13.0+cpu", None, False, "torch 2.13.0+cpu: a CPU-only build"),
        ("2.5.1+cu124", "12.4", True, "torch 2.5.1+cu124: older than 2.6"),
        ("2.13.0+cu124", "12.4", False, "torch 2.13.0+cu124 (CUDA 12.4): no GPU visible"),
    ],
)
def test_paper_stops_before_installing_on_a_torch_it_cannot_use(
    project: Path, version: str, cuda: str | None, available: bool, message: str
) -> None:
    torch = _torch(project / "torch-stand-in", version, cuda, available)
    done, lines = _make(project, "paper", torch=torch, **IDENTITY)
    assert done.returncode != 0
    assert f"error: {message}" in done.stderr
    assert not [line for line in lines if line.startswith(("pip", "dvc"))]


def test_paper_without_any_torch_says_what_to_install(project: Path) -> None:
    missing = project / "no-torch" / "torch"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text("raise ImportError('no torch here')\n", encoding="utf-8")
    done, lines = _make(project, "setup-gpu", torch=missing.parent)
    assert done.returncode != 0
    assert "error: torch: not importable in this environment" in done.stderr
    assert "download.pytorch.org/whl/cu124" in done.stderr
    assert not [line for line in lines if line.startswith("pip")]


def test_smol_without_a_git_identity_stops_before_dvc_exp_run(project: Path) -> None:
    done, lines = _make(project, "smol")
    assert done.returncode != 0
    assert "error: git config user.name and user.email: not set" in done.stderr
    assert "git config --global user.email" in done.stderr
    assert not [line for line in lines if line.startswith("dvc")]
    # with one, the same target goes on to the experiment
    done, lines = _make(project, "smol", **IDENTITY)
    assert done.returncode == 0, done.stderr
    run = _index(lines, "dvc exp run -S profile=smol")
    assert _index(lines, "python -m lorauq.preflight git-identity") < run
    # offline; no HF_HOME of make's own: the hub library's default cache, as for plain dvc
    assert lines[run + 1] == "dvc-env HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME= HF_TOKEN="
