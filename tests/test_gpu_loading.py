"""The GPU-path loaders, checked on CPU: GGUF bases, bitsandbytes configs, remote code.

A GGUF file is what many users have instead of a hub folder, and bitsandbytes 4/8-bit is what
fits the paper's 7B base on a 16 GB card; both are configured in ``params.yaml`` and reach
transformers only through ``lorauq.model``. Neither can wait for a GPU session to be tested:

- GGUF: we write the tiny base as a GGUF file ourselves (``gguf.GGUFWriter``, the writer
  llama.cpp's converter uses, with its q/k row permutation), load it back through
  ``load_base_model``/``load_tokenizer`` with ``base.gguf_file`` set, and demand the same
  letter logits as the source model from the real inference path: exactly for float32
  tensors, within Q8_0's rounding for a quantised file. A wrong permutation, a lost BOS or a
  tokenizer rebuilt differently from the GGUF metadata all change those logits.
- bitsandbytes: 4-bit kernels need CUDA, so we check what transformers is *asked*: the
  ``BitsAndBytesConfig`` (nf4, double quantisation, compute dtype from ``base.dtype``; 8-bit)
  and the ``device_map`` that puts the quantised weights on the GPU.
- ``trust_remote_code`` is off in both profiles of the repository's ``params.yaml``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tinyworld as tw
import torch

from lorauq import model as lorauq_model
from lorauq.config import load_params
from lorauq.errors import ModelError
from lorauq.model import _quantization_config, load_base_model, load_tokenizer

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- GGUF

# HF Mistral/Llama module names -> llama.cpp's per-block tensor names.
_GGUF_BLOCK = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _llama_cpp_permute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp stores q/k rows interleaved for its rotary kernel; transformers undoes this on
    load, so a file written without it would load with scrambled attention."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def write_gguf(base_dir: Path, out: Path, qtype: str = "F32") -> Path:
    """Write the tiny base at ``base_dir`` (config, byte-level BPE tokenizer, weights) as one
    GGUF file, the way llama.cpp's converter writes a Mistral model (architecture ``llama``)."""
    import gguf
    from safetensors.torch import load_file

    config = json.loads((base_dir / "config.json").read_text())
    tokenizer = json.loads((base_dir / "tokenizer.json").read_text())
    writer = gguf.GGUFWriter(str(out), arch="llama")
    writer.add_name("lorauq-tiny")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    writer.add_rope_dimension_count(config["head_dim"])
    writer.add_vocab_size(config["vocab_size"])

    vocab = tokenizer["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    special = {added["id"] for added in tokenizer["added_tokens"]}
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i in special else 1 for i in range(len(tokens))])  # 3 = CONTROL
    writer.add_token_merges([" ".join(pair) for pair in tokenizer["model"]["merges"]])
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_pad_token_id(config["pad_token_id"])
    writer.add_unk_token_id(vocab["<unk>"])
    writer.add_add_bos_token(True)

    quant = gguf.GGMLQuantizationType[qtype]
    weights = load_file(base_dir / "model.safetensors")

    def add(name: str, tensor: torch.Tensor) -> None:
        data = np.ascontiguousarray(tensor.float().numpy())
        if quant != gguf.GGMLQuantizationType.F32 and data.ndim == 2:
            writer.add_tensor(name, gguf.quants.quantize(data, quant), raw_dtype=quant)
        else:  # norms stay float32, as llama.cpp keeps them
            writer.add_tensor(name, data)

    add("token_embd.weight", weights["model.embed_tokens.weight"])
    for layer in range(config["num_hidden_layers"]):
        for hf_name, gguf_name in _GGUF_BLOCK.items():
            tensor = weights[f"model.layers.{layer}.{hf_name}.weight"]
            if gguf_name == "attn_q":
                tensor = torch.from_numpy(
                    _llama_cpp_permute(tensor.numpy(), config["num_attention_heads"])
                )
            elif gguf_name == "attn_k":
                tensor = torch.from_numpy(
                    _llama_cpp_permute(tensor.numpy(), config["num_key_value_heads"])
                )
            add(f"blk.{layer}.{gguf_name}.weight", tensor)
    add("output_norm.weight", weights["model.norm.weight"])
    # The tiny base ties its LM head to the embedding; llama.cpp writes it out explicitly.
    add("output.weight", weights.get("lm_head.weight", weights["model.embed_tokens.weight"]))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


@pytest.fixture
def tiny_base(tiny_base):
    """The session's tiny base, for a test that also needs gguf to write its file."""
    pytest.importorskip(
        "gguf",
        reason="gguf not installed: it writes the test's file, and transformers needs it to "
        "read any GGUF (pip install -r requirements-dev.txt)",
    )
    return tiny_base


def _letter_table(base_dir: Path, params):
    from lorauq.readout import letter_logits

    model = load_base_model(str(base_dir), params)
    tokenizer = load_tokenizer(str(base_dir), params)
    return letter_logits(
        model, tokenizer, tw.eval_set(), infer=tw.INFER, progress=False, desc="gguf"
    )


@pytest.mark.parametrize(("qtype", "atol"), [("F32", 1e-5), ("Q8_0", 5e-3)])
def test_gguf_base_gives_the_source_models_letter_logits(tiny_base, tmp_path, qtype, atol):
    """The GGUF file, loaded as a base with ``base.gguf_file``, answers like its source.

    float32 weights must come back bit for bit (the F32 round trip copies them), and the
    logits to 1e-5: tight enough to catch a wrong q/k permutation (on this barely pre-trained
    base it moves the logits by ~1e-3), loose enough for the ~3e-8 another CPU's BLAS kernels
    give on differently laid-out tensors. Q8_0 moved them by ~5e-4 when this test was
    written; the tolerance is ten times that.
    """
    folder = tmp_path / "gguf-base"  # a GGUF folder has no config.json
    folder.mkdir()
    write_gguf(tiny_base, folder / "tiny.gguf", qtype)
    gguf_params = dataclasses.replace(
        tw.BASE, kind="pretrained", model=str(folder), gguf_file="tiny.gguf"
    )

    source = _letter_table(tiny_base, tw.BASE)
    loaded = _letter_table(folder, gguf_params)

    logit_columns = [c for c in source.columns if c.startswith("logit")]
    assert list(loaded["id"]) == list(source["id"])
    assert logit_columns and not source[logit_columns[0]].isna().any()
    np.testing.assert_allclose(
        loaded[logit_columns].to_numpy(), source[logit_columns].to_numpy(), atol=atol, rtol=0
    )
    np.testing.assert_allclose(
        loaded["logsumexp_vocab"].to_numpy(), source["logsumexp_vocab"].to_numpy(), atol=atol
    )
    if qtype == "F32":
        source_weights = load_base_model(str(tiny_base), tw.BASE).state_dict()
        loaded_weights = load_base_model(str(folder), gguf_params).state_dict()
        assert source_weights.keys() == loaded_weights.keys()
        differ = [
            k for k in source_weights if not torch.equal(source_weights[k], loaded_weights[k])
        ]
        assert differ == []
    else:  # a quantised file must differ a little, or the quantisation did not happen
        assert not np.array_equal(loaded["logsumexp_vocab"], source["logsumexp_vocab"])


def test_gguf_file_missing_from_folder_names_it(tmp_path):
    """A GGUF folder is accepted without config.json, but the named file must be in it."""
    params = dataclasses.replace(
        tw.BASE, kind="pretrained", model=str(tmp_path), gguf_file="absent.gguf"
    )
    for loader in (load_base_model, load_tokenizer):
        with pytest.raises(ModelError, match=r"GGUF file absent\.gguf not found in the folder"):
            loader(str(tmp_path), params)


# --------------------------------------------------------------------------- bitsandbytes


def _base(**changes):
    return dataclasses.replace(tw.BASE, kind="pretrained", model="org/model", **changes)


def test_no_quantization_means_no_config():
    assert _quantization_config(_base(quantization="none")) is None


@pytest.mark.parametrize(
    ("dtype", "expected"), [("bfloat16", torch.bfloat16), ("float16", torch.float16)]
)
def test_4bit_is_qlora_nf4_with_the_base_dtype_for_compute(dtype, expected):
    config = _quantization_config(_base(quantization="4bit", dtype=dtype))
    assert type(config).__name__ == "BitsAndBytesConfig"
    assert (config.load_in_4bit, config.load_in_8bit) == (True, False)
    assert config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant is True
    assert config.bnb_4bit_compute_dtype == expected


def test_8bit_is_llm_int8():
    config = _quantization_config(_base(quantization="8bit"))
    assert (config.load_in_8bit, config.load_in_4bit) == (True, False)


class _Captured(torch.nn.Module):
    """What the monkeypatched ``from_pretrained`` returns: a module that records ``.to``."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.moved_to = None

    def to(self, *args, **kwargs):
        self.moved_to = args[0] if args else kwargs.get("device")
        return self


@pytest.fixture
def captured(monkeypatch):
    """Replace ``AutoModelForCausalLM.from_pretrained``; record the reference and kwargs."""
    import transformers

    calls = []

    def fake(cls, reference, **kwargs):
        calls.append((reference, kwargs))
        return _Captured()

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(fake))
    return calls


@pytest.mark.parametrize(
    ("device", "device_map"),
    [(torch.device("cuda", 0), {"": 0}), (torch.device("cuda", 1), {"": 1}), ("cpu", "cpu")],
)
def test_4bit_load_passes_quantization_config_and_device_map(
    captured, monkeypatch, device, device_map
):
    """Quantised weights are placed by transformers (``device_map``), never moved after."""
    monkeypatch.setattr(lorauq_model, "device", lambda: torch.device(device))
    model = load_base_model("org/model", _base(quantization="4bit", dtype="float16"))
    [(reference, kwargs)] = captured
    assert reference == "org/model"
    assert kwargs["quantization_config"].load_in_4bit is True
    assert kwargs["quantization_config"].bnb_4bit_compute_dtype == torch.float16
    assert kwargs["device_map"] == device_map
    assert kwargs["dtype"] == torch.float16
    assert kwargs["trust_remote_code"] is False
    assert model.moved_to is None  # .to() on a bitsandbytes model raises
    assert not model.weight.requires_grad and not model.training


def test_unquantized_load_on_cpu_has_no_quantization_and_is_moved(captured, monkeypatch):
    monkeypatch.setattr(lorauq_model, "device", lambda: torch.device("cpu"))
    model = load_base_model("org/model", _base(quantization="none", dtype="bfloat16"))
    [(_, kwargs)] = captured
    assert "quantization_config" not in kwargs and "device_map" not in kwargs
    assert kwargs["dtype"] == torch.bfloat16
    assert model.moved_to == torch.device("cpu")


def test_unquantized_load_on_gpu_goes_straight_to_the_gpu(captured, monkeypatch):
    """No full copy in host memory first: transformers places the weights (``device_map``)."""
    monkeypatch.setattr(lorauq_model, "device", lambda: torch.device("cuda", 1))
    model = load_base_model("org/model", _base(quantization="none", dtype="bfloat16"))
    [(_, kwargs)] = captured
    assert "quantization_config" not in kwargs
    assert kwargs["device_map"] == {"": 1}
    assert model.moved_to is None


# --------------------------------------------------------------------------- remote code


@pytest.mark.parametrize("profile", ["tiny", "paper"])
def test_repo_profiles_do_not_trust_remote_code(profile):
    params = load_params(REPO / "params.yaml", {"profile": profile})
    assert params.base.trust_remote_code is False
