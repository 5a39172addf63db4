"""``params.yaml`` as ``dvc exp run`` writes it: the profile's stage lists copied to the top.

``dvc.yaml`` builds one fine-tuning and one inference stage per (ensemble, member stage) of
the active profile, but DVC's templating cannot look a key up through the value of another
(``${${profile}.members}``), so the top level of ``params.yaml`` repeats the profile's
``ensembles`` (their names) and ``members``. DVC's Hydra composition (``.dvc/config``,
``compose.yaml``) rewrites them on every ``dvc exp run``; :func:`compose_params` does the same
for a plain ``dvc repro`` after ``params.yaml`` was edited by hand. lorauq refuses to run on
a file whose copies disagree with its profile (:func:`lorauq.config.load_params`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lorauq.atomic import write_text_atomic
from lorauq.errors import ConfigError

__all__ = ["CONFIG_NAME", "compose_params", "main"]

#: The composition DVC runs: ``compose.yaml`` in the repository root (``.dvc/config``).
CONFIG_NAME = "compose"


def compose_params(root: str | Path = ".", overrides: Sequence[str] = ()) -> Path:
    """Rewrite ``root/params.yaml`` as ``dvc exp run -S override …`` would, atomically."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    root = Path(root).resolve()
    target = root / "params.yaml"
    try:
        with initialize_config_dir(str(root), version_base=None):
            config = compose(config_name=CONFIG_NAME, overrides=list(overrides))
        OmegaConf.resolve(config)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"{target}: cannot compose it with {list(overrides)} ({exc})") from exc
    write_text_atomic(target, OmegaConf.to_yaml(config))
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lorauq.compose [key=value …]``: what ``dvc exp run -S key=value`` writes."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m lorauq.compose", description=main.__doc__)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. profile=paper")
    parser.add_argument("--root", default=".", help="the repository root (default: here)")
    args = parser.parse_args(argv)
    try:
        print(compose_params(args.root, args.overrides))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
