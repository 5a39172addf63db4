"""docs/params.md names every key the code accepts: ``dvc exp run`` drops params.yaml's
comments, so that page is where a key is explained, and it must not fall behind the code."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from lorauq import config

DOC = Path(__file__).resolve().parents[1] / "docs" / "params.md"


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_every_key_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z_]+)`", text))
    sections = {
        "base": config.BaseParams,
        "data": config.DataParams,
        "source": config.SourceSpec,
        "lora": config.LoraParams,
        "train": config.TrainParams,
        "infer": config.InferParams,
        "analysis": config.AnalysisParams,
        "fig_c": config.FigCParams,
    }
    for name, cls in sections.items():
        missing = sorted(_fields(cls) - documented)
        assert not missing, f"docs/params.md lacks {name} key(s) {missing}"
    assert set(config.TOP_LEVEL_KEYS) <= documented
    assert set(config.PROFILE_KEYS) <= documented
