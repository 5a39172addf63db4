"""Stage ``base``: build and pre-train the tiny base, dequantise a GGUF base once, or record
which pretrained base the later stages load."""

from __future__ import annotations

import json
from pathlib import Path

from lorauq.atomic import write_text_atomic
from lorauq.config import Params
from lorauq.gguf import export_gguf_base, source_manifest
from lorauq.layout import Layout

__all__ = ["run", "summary"]


def run(params: Params, layout: Layout = Layout(), progress: bool = True) -> Path:
    """Tiny profile: ``data/base/`` holds the model and tokenizer; a GGUF base (``smol``): its
    dequantised export and a manifest (``base.json``: package, version, file hash); otherwise
    a manifest naming the model (and revision) the later stages load from the hub or a folder."""
    if params.base.kind == "tiny":
        from lorauq.tiny.base import build_tiny_base

        return build_tiny_base(layout.base, params.base, params.data, progress=progress)
    if params.base.gguf_file:
        return export_gguf_base(layout.base, params.base)
    manifest = source_manifest(params.base)
    write_text_atomic(layout.base / "base.json", json.dumps(manifest, indent=2) + "\n")
    return layout.base


def summary(layout: Layout = Layout()) -> str:
    """What the notebook shows: the tiny base's pre-training summary, or the manifest."""
    pretraining = layout.base / "pretraining.json"
    chosen = pretraining if pretraining.exists() else layout.base / "base.json"
    return chosen.read_text(encoding="utf-8")
