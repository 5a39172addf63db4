"""lorauq.preflight in-process: where the git identity comes from, which torch passes, and the
profile switch that leaves a file alone when there is nothing to switch
(tests/test_makefile.py runs the same checks through make)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from lorauq.errors import ConfigError
from lorauq.preflight import (
    TORCH_FLOOR,
    active_profile,
    check_cuda_torch,
    check_git_identity,
    main,
    use_profile,
)

ROOT = Path(__file__).resolve().parents[1]
ROLES = [f"GIT_{r}_{k}" for r in ("AUTHOR", "COMMITTER") for k in ("NAME", "EMAIL")]


@pytest.fixture
def clone(tmp_path: Path, monkeypatch) -> Path:
    """A git repository on a machine without any git identity."""
    for var in ROLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    subprocess.run(["git", "init", "-q", str(tmp_path / "clone")], check=True)
    return tmp_path / "clone"


def _git(clone: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(clone), *args], check=True)


def test_the_identity_comes_from_the_clone_s_config(clone: Path) -> None:
    _git(clone, "config", "user.name", "Ada")
    with pytest.raises(ConfigError, match=r"git config user\.email: not set"):
        check_git_identity(clone)
    _git(clone, "config", "user.email", "ada@example.org")
    assert check_git_identity(clone) == ("Ada", "ada@example.org")


def test_or_from_the_environment_as_dvc_reads_it(clone: Path, monkeypatch) -> None:
    """scmrepo takes GIT_AUTHOR_*/GIT_COMMITTER_* before git config: so does the check."""
    for var in ROLES:
        monkeypatch.setenv(var, "ci@example.org" if var.endswith("EMAIL") else "CI")
    assert check_git_identity(clone) == ("CI", "ci@example.org")
    monkeypatch.delenv("GIT_COMMITTER_EMAIL")  # the committer needs one too
    with pytest.raises(ConfigError, match=r"^git config user\.email: not set"):
        check_git_identity(clone)


def _fake_torch(monkeypatch, version: str, cuda: str | None, available: bool) -> None:
    torch = SimpleNamespace(
        __version__=version,
        version=SimpleNamespace(cuda=cuda),
        cuda=SimpleNamespace(is_available=lambda: available),
    )
    monkeypatch.setitem(sys.modules, "torch", torch)


def test_a_cuda_torch_at_the_floor_passes(monkeypatch) -> None:
    floor = ".".join(map(str, TORCH_FLOOR))
    _fake_torch(monkeypatch, f"{floor}.0+cu124", "12.4", True)
    assert check_cuda_torch() == f"{floor}.0+cu124"
    _fake_torch(monkeypatch, "2.5.1", "12.1", True)
    with pytest.raises(ConfigError, match=rf"torch 2\.5\.1: older than {floor}"):
        check_cuda_torch()


def test_switching_to_the_active_profile_leaves_the_file_alone(tmp_path: Path, capsys) -> None:
    for name in ("params.yaml", "compose.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    before = (tmp_path / "params.yaml").stat().st_mtime_ns
    assert active_profile(tmp_path) == "tiny"
    assert use_profile("tiny", tmp_path) is None
    assert (tmp_path / "params.yaml").stat().st_mtime_ns == before
    assert use_profile("smol", tmp_path) == "tiny"
    assert active_profile(tmp_path) == "smol"


def test_an_unreadable_params_file_names_its_path(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "params.yaml").write_text("profile: [tiny\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["profile", "tiny"]) == 2
    assert f"error: {tmp_path / 'params.yaml'}: cannot read it" in capsys.readouterr().err
    (tmp_path / "params.yaml").write_text("seed: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"params\.yaml: profile: missing or not a name"):
        active_profile(tmp_path)
