"""Load a base model and its tokenizer: a hub id, a local folder, a GGUF file, or the export.

One loader serves every profile: a hub id or local folder (Mistral-7B in the paper), a GGUF
file (in a folder, or shipped inside an installed Python package: ``package:<name>``,
``lorauq.gguf``), or the folder the ``base`` stage wrote (the tiny base, ``lorauq.tiny``, or a
GGUF base dequantised once). Remote code is never trusted unless ``base.trust_remote_code``
says so. LoRA is attached by ``lorauq.lora``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from lorauq.config import BaseParams
from lorauq.errors import ModelError, missing_hub_revision

__all__ = [
    "DTYPES",
    "base_reference",
    "compute_dtype",
    "device",
    "exported",
    "load_base",
    "load_base_model",
    "load_tokenizer",
    "set_threads",
]

# peft imports bitsandbytes, which logs a harmless CPU-kernel warning on some CPUs.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
# peft's PeftModel probes `getattr(model, "is_gradient_checkpointing", True)`, a property that
# transformers 5 deprecated; nothing lorauq calls or can change, and it would land as red stderr
# in every executed fine-tuning notebook. Exactly that warning, from that module, is ignored.
warnings.filterwarnings(
    "ignore",
    message=r"`is_gradient_checkpointing` is deprecated",
    category=FutureWarning,
    module=r"transformers\.modeling_utils",
)

#: ``base.dtype`` → the torch dtype the base is loaded in.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def set_threads(threads: int) -> None:
    """Pin torch's CPU threads (0 = leave torch's default); two runs side by side must use 1."""
    if threads > 0:
        torch.set_num_threads(threads)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def exported(params: BaseParams) -> bool:
    """Whether the stages load the ``base`` stage's folder: the tiny base, or a GGUF base
    (dequantising a GGUF file takes tens of seconds per load, so it is done once)."""
    return params.kind == "tiny" or bool(params.gguf_file)


def base_reference(params: BaseParams, base_dir: str | Path) -> str:
    """What the stages load: the ``base`` stage's folder, or the configured hub id / folder."""
    return str(base_dir) if exported(params) else str(params.model)


def load_base(params: BaseParams, base_dir: str | Path):
    """(model, tokenizer) of the experiment's base, loaded once per process.

    The ``base`` stage's folder is named by its path relative to the working folder (the
    repository root in every stage): peft writes that name into each adapter's
    ``adapter_config.json``, and an absolute path there would make the same adapter differ
    from machine to machine.
    """
    reference = base_reference(params, base_dir)
    local = exported(params)
    if local:
        if params.kind != "tiny" and not (Path(base_dir) / "config.json").is_file():
            raise ModelError(
                f"{base_dir}: no dequantised base (config.json) of GGUF base {params.model}; "
                "run the base stage first (dvc repro base)"
            )
        params = dataclasses.replace(params, gguf_file=None, revision=None)
    model = load_base_model(reference, params)
    if local:
        model.name_or_path = os.path.relpath(reference)
    return model, load_tokenizer(reference, params)


def _quantization_config(params: BaseParams):
    if params.quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if params.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=DTYPES[params.dtype],
    )


def _check_reference(reference: str, params: BaseParams) -> None:
    """Fail early and clearly on a local path that does not exist (not a hub id).

    A GGUF folder has no ``config.json`` (the file carries config and tokenizer itself), so
    with ``base.gguf_file`` set it is the named file that must be there.
    """
    # A hub id is "name" or "org/name"; a rooted reference or one with more parts is a path.
    looks_local = reference.startswith((".", "/", "~")) or reference.rstrip("/").count("/") > 1
    path = Path(reference).expanduser()
    if looks_local and not path.exists():
        raise ModelError(f"{reference}: base model folder not found")
    if not path.is_dir():
        return
    if params.gguf_file:
        if not (path / params.gguf_file).is_file():
            raise ModelError(f"{reference}: GGUF file {params.gguf_file} not found in the folder")
    elif not (path / "config.json").is_file():
        raise ModelError(f"{reference}: not a model folder (no config.json)")


def _trust_remote_code(reference: str, params: BaseParams) -> bool:
    """``base.trust_remote_code``, with a warning when it is on: a model repo's Python code
    then runs in this process (tokenizer and model alike), so the user must see it."""
    if params.trust_remote_code:
        warnings.warn(
            f"{reference}: base.trust_remote_code is on; code from the model repo will run",
            UserWarning,
            stacklevel=3,
        )
    return bool(params.trust_remote_code)


def _load_error(reference: str, params: BaseParams, what: str, exc: OSError) -> ModelError:
    """The ModelError for a failed ``from_pretrained``: a revision the hub repository does not
    have is named as such (transformers words it as a bare OSError)."""
    if missing_hub_revision(exc):
        return ModelError(
            f"{reference}: revision {params.revision!r} does not exist on the Hugging Face hub "
            f"({exc}); base.revision must be a commit (SHA) of the model repository"
        )
    return ModelError(f"{reference}: cannot load {what} ({exc})")


def load_tokenizer(reference: str, params: BaseParams):
    """The tokenizer of the base, left-padded (the answer position is then always the last)."""
    from transformers import AutoTokenizer

    _check_reference(reference, params)
    kwargs: dict[str, Any] = {"trust_remote_code": _trust_remote_code(reference, params)}
    if params.gguf_file:
        kwargs["gguf_file"] = params.gguf_file
    if params.revision:
        kwargs["revision"] = params.revision
    try:
        tokenizer = AutoTokenizer.from_pretrained(reference, **kwargs)
    except OSError as exc:
        raise _load_error(reference, params, "tokenizer", exc) from exc
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(reference: str, params: BaseParams):
    """The frozen base LM on the available device, in the configured dtype/quantisation."""
    from transformers import AutoModelForCausalLM

    _check_reference(reference, params)
    kwargs: dict[str, Any] = {
        "dtype": DTYPES[params.dtype],
        "trust_remote_code": _trust_remote_code(reference, params),
    }
    if params.gguf_file:
        kwargs["gguf_file"] = params.gguf_file
    if params.revision:
        kwargs["revision"] = params.revision
    if params.attn_implementation:
        kwargs["attn_implementation"] = params.attn_implementation
    quantization = _quantization_config(params)
    on_gpu = device().type == "cuda"
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    if on_gpu:
        # Load straight onto the GPU: no full CPU copy first (15 GB of host RAM for a bf16 7B).
        kwargs["device_map"] = {"": device().index or 0}
    elif quantization is not None:
        kwargs["device_map"] = "cpu"
    try:
        model = AutoModelForCausalLM.from_pretrained(reference, **kwargs)
    except OSError as exc:
        raise _load_error(reference, params, "base model", exc) from exc
    if "device_map" not in kwargs:
        model.to(device())
    model.requires_grad_(False)
    model.eval()
    return model


def compute_dtype(model) -> torch.dtype:
    """The dtype the base computes in: its input embedding's (a 4-bit base keeps that one in
    the compute dtype, so this also reads float16 for a float16 QLoRA run)."""
    return model.get_input_embeddings().weight.dtype
