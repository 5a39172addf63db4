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
# # 03 · Letter logits of every epoch
#
# **What.** For every evaluation question, every saved epoch of the members of one fine-tuning stage is asked the question once, and we keep only what the uncertainty measures need: the logits of the K answer letters at the answer position and the log-sum-exp over the whole vocabulary. Both of the paper's read-outs stay possible from these: the letters renormalised, or the letters plus one *other* class for the rest of the vocabulary.
#
# **Why store logits, not metrics.** Every number and figure downstream (accuracy, NLL, ECE, entropies, mutual information, any ensemble size) is a function of this table, so the expensive forward passes run once. An empty `ensemble` evaluates the prior, epoch 0: the base model, identical for every member of every ensemble, evaluated once and shared. With `data.stored_letters` (the paper: 5) the letters a… up to that many are kept for every question, also past a 4-choice question's last choice, as the authors did.
#
# **Output.** `data/logits/<ensemble>/members-<stage>.parquet` (or `prior.parquet`), one row per (member, epoch, eval set, question), float32; beside it `members-<stage>.training.json`, each epoch's training loss and the LoRA-L2 norm of the saved adapter.

# %% tags=["parameters"]
# Parameters (papermill injects overrides after this cell).
params_file: str = "params.yaml"  # the experiment's parameters, relative to the repository root
overrides: dict = {}  # dotted keys over params.yaml, e.g. {"train.epochs": 2}
root: str = ""  # the repository root; empty: found upwards from the working folder
ensemble: str = ""  # the ensemble to evaluate; empty: the prior (epoch 0)
members: str = "0"  # the stage: a member id, or a range like 0-4

# %%
from lorauq.stages import open_experiment

# The repository root becomes the working folder: every path in params.yaml is relative to it.
params, layout = open_experiment(root, params_file, overrides)

# %%
from lorauq.stages import infer

path = infer.run(params, ensemble or None, members, layout)
path

# %% [markdown]
# ## A look at the table
# Questions per epoch and eval set. Every epoch must hold the same counts: a gap means an epoch's checkpoint was missing or incomplete. The prior has epoch 0 only; a member has epochs 1 … `train.epochs` (training by `train.steps`: one per checkpoint, its step in the training log).

# %%
from lorauq.store import read_logits

table = read_logits(path)
table.groupby(["epoch", "eval_set"]).size().unstack()
