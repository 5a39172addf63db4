"""``python -m lorauq prepare``: the pipeline's one stage that is not a notebook."""

from __future__ import annotations

import argparse
import sys

from lorauq.config import load_params
from lorauq.errors import LorauqError
from lorauq.layout import Layout
from lorauq.stages import prepare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lorauq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="write data/prepared/ from the sources in params.yaml")
    prep.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        prepare.check_tracked_paths(params)
        for name, path in prepare.run(params, Layout()).items():
            print(f"{name}: {path}")
    except LorauqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
