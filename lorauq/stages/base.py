"""Stage ``base``: build and pre-train the tiny base, or record which pretrained base is used."""

from __future__ import annotations

import json
from pathlib import Path

from lorauq.atomic import write_text_atomic
from lorauq.config import Params
from lorauq.layout import Layout


def run(params: Params, layout: Layout = Layout(), progress: bool = True) -> Path:
    """Tiny profile: ``data/base/`` holds the model and tokenizer; otherwise a manifest naming
    the model (and revision) that the later stages load from the hub or a local folder."""
    if params.base.kind == "tiny":
        from lorauq.tinybase import build_tiny_base

        return build_tiny_base(layout.base, params.base, params.data, progress=progress)
    manifest = {
        "model": params.base.model,
        "revision": params.base.revision,
        "gguf_file": params.base.gguf_file,
    }
    write_text_atomic(layout.base / "base.json", json.dumps(manifest, indent=2) + "\n")
    return layout.base


def summary(layout: Layout = Layout()) -> str:
    """What the notebook shows: the tiny base's pre-training summary, or the manifest."""
    pretraining = layout.base / "pretraining.json"
    chosen = pretraining if pretraining.exists() else layout.base / "base.json"
    return chosen.read_text(encoding="utf-8")
