"""Stage ``prepare``: every source of the experiment as a validated, prepared Question table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lorauq.config import Params, SourceSpec
from lorauq.data import load_questions
from lorauq.layout import Layout
from lorauq.questions import save_questions
from lorauq.synthetic import WorldSpec


def _load_source(spec: SourceSpec, world: WorldSpec) -> pd.DataFrame:
    frame = load_questions(
        spec.source,
        spec.split,
        path=spec.path,
        group=spec.group,
        subjects=spec.subjects,
        world=world if spec.source == "synthetic" else None,
    )
    return frame.head(spec.limit).reset_index(drop=True) if spec.limit else frame


def run(params: Params, layout: Layout = Layout()) -> dict[str, Path]:
    """``train.parquet`` and one ``eval/<name>.parquet`` per eval set under ``data/prepared``."""
    world = WorldSpec.from_params(params.data.world)
    written = {"train": save_questions(_load_source(params.data.train, world), layout.train_table)}
    for name, spec in params.data.eval.items():
        written[name] = save_questions(_load_source(spec, world), layout.eval_table(name))
    return written
