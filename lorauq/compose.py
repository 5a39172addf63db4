"""``params.yaml`` as ``dvc exp run`` writes it: the profile's stage lists copied to the top.

It also holds the defaults layer: ``profile_defaults.yaml`` is every profile key at its
documented default (the dataclasses of :mod:`lorauq.config`), and a line
``- profile_defaults@<profile>`` in ``compose.yaml``'s defaults list lays it under that
profile before ``params.yaml`` is merged on top. A profile can then state only what differs,
yet the composed ``params.yaml`` holds every ``<profile>.…`` key that a ``dvc.yaml`` stage
names, which DVC requires ("Parameters … are missing" otherwise).

``dvc.yaml`` builds one fine-tuning and one inference stage per (ensemble, member stage) of
the active profile, but DVC's templating cannot look a key up through the value of another
(``${${profile}.members}``), so the top level of ``params.yaml`` repeats the profile's
``ensembles`` (their names) and ``members``. DVC's Hydra composition (``.dvc/config``,
``compose.yaml``) rewrites them on every ``dvc exp run``; :func:`compose_params` does the same
for a plain ``dvc repro`` after ``params.yaml`` was edited by hand. lorauq refuses to run on
a file whose copies disagree with its profile (:func:`lorauq.config.load_params`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lorauq.atomic import write_text_atomic
from lorauq.config import config_sections
from lorauq.errors import ConfigError

__all__ = [
    "CONFIG_NAME",
    "DEFAULTS_FILE",
    "compose_params",
    "main",
    "profile_defaults",
    "write_profile_defaults",
]

#: The composition DVC runs: ``compose.yaml`` in the repository root (``.dvc/config``).
CONFIG_NAME = "compose"
#: The defaults layer, beside ``compose.yaml``.
DEFAULTS_FILE = "profile_defaults.yaml"
_DEFAULTS_HEADER = """\
# The defaults layer: every key of a profile at its documented default (docs/params.md), as
# lorauq.config's dataclasses define it. compose.yaml lays it under a profile it names
# (`- profile_defaults@<profile>`), so that profile may state only what differs and still
# give DVC every key a stage names. Written by `python -m lorauq.compose --write-defaults`.
"""


def profile_defaults() -> dict[str, Any]:
    """Every section of a profile (``base``, ``data``, …) at its defaults."""
    return {name: dataclasses.asdict(cls()) for name, cls in config_sections().items()}


def write_profile_defaults(root: str | Path = ".") -> Path:
    """Rewrite ``root/profile_defaults.yaml`` from the dataclasses, atomically."""
    import yaml

    target = Path(root) / DEFAULTS_FILE
    body = yaml.safe_dump(profile_defaults(), sort_keys=False, default_flow_style=False)
    write_text_atomic(target, _DEFAULTS_HEADER + body)
    return target


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
    parser.add_argument(
        "--write-defaults",
        action="store_true",
        help=f"rewrite {DEFAULTS_FILE} from lorauq.config's defaults instead",
    )
    args = parser.parse_args(argv)
    try:
        if args.write_defaults:
            print(write_profile_defaults(args.root))
            return 0
        print(compose_params(args.root, args.overrides))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
