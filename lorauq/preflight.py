"""Checks the Makefile's routes make before they start, so a run fails in seconds, not hours.

Three traps sit between the routes of the Makefile, and each is cheap to see beforehand:

* ``dvc exp run`` (``make smol``, ``make paper``) records its experiment as a git commit, so
  it needs a git identity; without one DVC stops with a terse "Git user name and email must
  be configured", which names neither the keys nor how to set them.
* ``make paper`` must keep the machine's CUDA build of torch: a CPU torch (the one
  ``make setup`` installs) would train Mistral-7B on the CPU for weeks.
* ``dvc exp run -S profile=smol`` leaves ``profile: smol`` in the workspace's ``params.yaml``,
  so a later plain ``dvc repro`` would silently run smol: ``make repro`` switches back first.

``python -m lorauq.preflight git-identity|cuda-torch|profile NAME`` runs one of them; a failed
check prints ``error: …`` naming what to set or install and exits with status 2. The module
imports nothing beyond the standard library until a check needs it, because ``make setup-gpu``
runs it before lorauq's dependencies are installed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from lorauq.errors import ConfigError, exit_code

__all__ = [
    "DEFAULT_PROFILE",
    "TORCH_FLOOR",
    "active_profile",
    "check_cuda_torch",
    "check_git_identity",
    "main",
    "use_profile",
]

#: The oldest torch lorauq runs on: transformers 5 disables an older one (pyproject.toml says so).
TORCH_FLOOR = (2, 6)

#: The profile ``make repro``, the README's results and the committed ``dvc.lock`` are about.
DEFAULT_PROFILE = "tiny"


def _git_config(root: Path, key: str) -> str:
    done = subprocess.run(
        ["git", "config", "--get", key], cwd=root, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def check_git_identity(root: str | Path = ".") -> tuple[str, str]:
    """The ``(name, email)`` ``dvc exp run`` would commit with, or a ``ConfigError`` saying how
    to set them. Like DVC (scmrepo), it reads ``GIT_AUTHOR_*``/``GIT_COMMITTER_*`` from the
    environment, else git's ``user.name`` and ``user.email`` for the repository at ``root``."""
    root = Path(root)
    config = {key: _git_config(root, f"user.{key}") for key in ("name", "email")}
    missing = []
    for key in ("name", "email"):
        for role in ("AUTHOR", "COMMITTER"):
            if not (os.environ.get(f"GIT_{role}_{key.upper()}") or config[key]):
                missing.append(f"user.{key}")
                break
    if missing:
        raise ConfigError(
            f"git config {' and '.join(missing)}: not set in {root.resolve()}; `dvc exp run` "
            "(make smol, make paper) records each experiment as a git commit and needs a git "
            "identity. Set it once: git config --global user.name 'Your Name' && "
            "git config --global user.email you@example.org (without --global: this clone only)"
        )
    return (
        os.environ.get("GIT_AUTHOR_NAME") or config["name"],
        os.environ.get("GIT_AUTHOR_EMAIL") or config["email"],
    )


def check_cuda_torch() -> str:
    """The version of the importable torch if it is a CUDA build, new enough, that sees a GPU;
    otherwise a ``ConfigError`` saying which torch was found and how to install a CUDA one."""
    try:
        import torch
    except ImportError as exc:
        raise ConfigError(
            "torch: not importable in this environment; `make setup-gpu` keeps the CUDA torch "
            "the machine has and installs none. Install one first (docs/gpu.md), e.g. "
            ".venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cu124"
        ) from exc
    release = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    if release < TORCH_FLOOR:
        raise ConfigError(
            f"torch {torch.__version__}: older than {'.'.join(map(str, TORCH_FLOOR))}, which "
            "transformers 5 needs (it disables an older torch). Install a newer CUDA build "
            "(docs/gpu.md), e.g. .venv/bin/pip install --upgrade torch --index-url "
            "https://download.pytorch.org/whl/cu124"
        )
    if torch.version.cuda is None:
        raise ConfigError(
            f"torch {torch.__version__}: a CPU-only build, which would run the paper profile on "
            "the CPU. Replace it with a CUDA build (docs/gpu.md), e.g. .venv/bin/pip install "
            "--force-reinstall torch --index-url https://download.pytorch.org/whl/cu124, or "
            "rm -rf .venv and rerun make setup-gpu where the machine's Python has a CUDA torch"
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            f"torch {torch.__version__} (CUDA {torch.version.cuda}): no GPU visible "
            "(torch.cuda.is_available() is False); check nvidia-smi and CUDA_VISIBLE_DEVICES"
        )
    return str(torch.__version__)


def active_profile(root: str | Path = ".") -> str:
    """The ``profile`` the workspace's ``params.yaml`` selects (what ``dvc repro`` would run)."""
    import yaml

    path = Path(root).resolve() / "params.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("profile"), str):
        raise ConfigError(f"{path}: profile: missing or not a name")
    return raw["profile"]


def use_profile(name: str = DEFAULT_PROFILE, root: str | Path = ".") -> str | None:
    """Make ``params.yaml`` select profile ``name``, as ``dvc exp run -S profile=NAME`` would.

    Returns the profile it switched away from, or ``None`` when ``name`` was already active
    (then the file is left untouched, byte for byte).
    """
    current = active_profile(root)
    if current == name:
        return None
    from lorauq.compose import compose_params

    compose_params(root, [f"profile={name}"])
    return current


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lorauq.preflight CHECK``: one check of a Makefile route, status 2 if it fails."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lorauq.preflight", description=main.__doc__)
    checks = parser.add_subparsers(dest="check", required=True)
    checks.add_parser("git-identity", help="the git identity `dvc exp run` commits with")
    checks.add_parser("cuda-torch", help="a CUDA build of torch that sees a GPU (make paper)")
    profile = checks.add_parser("profile", help="switch params.yaml to a profile (make repro)")
    profile.add_argument("name", nargs="?", default=DEFAULT_PROFILE)
    args = parser.parse_args(argv)
    return exit_code(lambda: _run(args.check, getattr(args, "name", DEFAULT_PROFILE)))


def _run(check: str, profile: str) -> str:
    """One check of :func:`main`; what it found, as a line for the make log."""
    if check == "git-identity":
        name, email = check_git_identity()
        return f"git identity: {name} <{email}>"
    if check == "cuda-torch":
        return f"torch {check_cuda_torch()} with CUDA: kept"
    previous = use_profile(profile)
    if previous is None:
        return f"params.yaml: profile {profile}"
    return (
        f"params.yaml selected profile {previous!r} (left by `dvc exp run -S "
        f"profile={previous}`, e.g. make smol); switched it back to {profile!r}, "
        f"as `python -m lorauq.compose profile={profile}` does. To run "
        f"{previous!r} again: dvc exp run -S profile={previous}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
