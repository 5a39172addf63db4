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
# # 02 · Fine-tune ensemble members
#
# **What.** Each member *m* of an ensemble gets a fresh LoRA adapter; its initialisation and the order of its training batches come from seed *m*, and nothing else differs between members. How a member is trained is the profile's `lora` and `train` with the ensemble's overrides (the paper's `lora_l2`, `reg_l2` with weight decay instead of the prior, `r32` with rank 32). The loss is the paper's: cross-entropy over the full vocabulary at the answer position only, plus the LoRA prior λ·Σ‖B·A‖²_F, which keeps the fine-tuned weights near the pre-trained ones.
#
# **Which members this run trains.** The profile's `members` lists the fine-tuning stages: a member id trains that member alone (`finetune@lora_l2-3`), so members can run on different GPUs or machines and meet through a DVC remote (`docs/scaling.md`); a range such as `0-4` trains those members in one process (`finetune@lora_l2-0-4`), which saves the start-up that dominates small models.
#
# **Output.** After every epoch a checkpoint (peft's safetensors adapter + optimizer state) lands in `data/adapters/<ensemble>/members-<stage>/member-<m>/epoch-<e>/`, written under a temporary name and renamed, so a killed run resumes after its last complete epoch and ends where an uninterrupted run would. Each folder loads with `PeftModel.from_pretrained` and no lorauq.

# %% tags=["parameters"]
# Parameters (papermill injects overrides after this cell).
params_file: str = "params.yaml"  # the experiment's parameters, relative to the repository root
overrides: dict = {}  # dotted keys over params.yaml, e.g. {"train.epochs": 2}
root: str = ""  # the repository root; empty: found upwards from the working folder
ensemble: str = "lora_l2"  # the ensemble, a key of the profile's ensembles
members: str = "0"  # the stage: a member id, or a range like 0-4

# %%
from lorauq.stages import open_experiment

# The repository root becomes the working folder: every path in params.yaml is relative to it.
params, layout = open_experiment(root, params_file, overrides)

# %%
from lorauq.stages import finetune

logs = finetune.run(params, ensemble, members, layout)

# %% [markdown]
# ## Training curve
# One row per member and epoch. `loss` is the mean cross-entropy at the answer position (nats; a uniform guess among four letters scores ln 4 ≈ 1.39), `prior` the mean LoRA prior term before λ, `tokens` the tokens seen, `elapsed_s` the epoch's wall time. The loss should fall below the uniform guess within an epoch or two but not reach 0: in the `tiny` profile part of the training labels are resampled at random (the `noisy` group).

# %%
import pandas as pd

pd.DataFrame([row for member in logs.values() for row in member]).set_index(["member", "epoch"])
