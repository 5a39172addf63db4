"""Write the numbered notebooks from the cell sources below (outputs empty, kernel python3).

The notebooks are the reading surface; this script only keeps their boilerplate identical.
Run it after editing a cell here: ``python scripts/make_notebooks.py``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

SETUP = """import os

from lorauq.config import load_params
from lorauq.pipeline import Layout, find_root

ROOT = find_root(root)
os.chdir(ROOT)  # every path in params.yaml and dvc.yaml is relative to the repository root
params = load_params(ROOT / params_file, overrides)
layout = Layout(ROOT)
print(f"profile={params.profile} members={params.members}")"""

# One parameter per line, `name: type = default  # help`: `papermill --help-notebook` reads the
# type from the annotation and the help from the comment (a line with a second "=" is skipped).
PARAMETERS = """# Parameters (papermill injects overrides after this cell).
params_file: str = "params.yaml"  # the experiment's parameters, relative to the repository root
overrides: dict = {}  # dotted keys over params.yaml, e.g. {"train.epochs": 2}
root: str = ""  # the repository root; empty: found upwards from the working folder"""

NOTEBOOKS = {
    "01_base.ipynb": [
        "# 01 · The base model\n\n"
        "**What.** Every ensemble member starts from one frozen base model; this notebook provides "
        "it. In the `paper` profile the base is Mistral-7B-v0.1 and the notebook only records which "
        "model (and revision) the later stages load. In the offline `tiny` profile it *builds* the "
        "base: a byte-level BPE tokenizer trained on the synthetic world, a Mistral-architecture "
        "model of about half a million parameters, and a short full pre-training on the questions "
        "of the *known* domain.\n\n"
        "**Why.** The paper's effects need a base with prior knowledge: knowledge that fine-tuning "
        "can keep or forget, and a notion of what it has never seen. LoRA on a randomly initialised "
        "base does not learn at all, so the tiny base is pre-trained, not just initialised.\n\n"
        "**Output.** `data/base/` (model + tokenizer, loadable with `AutoModelForCausalLM`), used "
        "unchanged by every later stage.",
        ("parameters", PARAMETERS),
        SETUP,
        "from lorauq.pipeline import build_base\n\nbuild_base(params, layout)",
        "## What the base knows\n"
        "How to read it: `parameters` and `vocab_size` give the model's size; `final_loss` is the "
        "mean next-token loss over the last 20 pre-training steps (nats per token; lower means "
        "the pre-training corpus was learned). The real test comes in 04: the `known` eval set "
        "must score well above chance at epoch 0, *before* any fine-tuning. The `paper` profile "
        "prints the model reference instead.",
        "pretraining = layout.base / 'pretraining.json'\n"
        "print(pretraining.read_text() if pretraining.exists() else (layout.base / 'base.json').read_text())",
    ],
    "02_finetune.ipynb": [
        "# 02 · Fine-tune one ensemble member\n\n"
        "**What.** Member *m* gets a fresh LoRA adapter; its initialisation and the order of its "
        "training batches come from seed *m*, and nothing else differs between members. The loss is "
        "the paper's: cross-entropy over the full vocabulary at the answer position only, plus the "
        "LoRA prior λ·Σ‖B·A‖²_F, which keeps the fine-tuned weights near the pre-trained ones.\n\n"
        "**Why one member per run.** Members are independent, so each is its own DVC stage "
        "(`finetune@m`): they can run on different GPUs or machines and meet through a DVC remote "
        "(see `docs/scaling.md`).\n\n"
        "**Output.** After every epoch a checkpoint (peft's safetensors adapter + optimizer state) "
        "lands in `data/adapters/member-{m}/epoch-{e}/`, written under a temporary name and renamed, "
        "so a killed run resumes after its last complete epoch and ends where an uninterrupted run "
        "would. Each folder loads with `PeftModel.from_pretrained` and no lorauq.",
        ("parameters", PARAMETERS + "\nmember: int = 0  # the member to train; its id is its seed"),
        SETUP,
        "from lorauq.pipeline import finetune\n\nlogs = finetune(params, member, layout)",
        "## Training curve\n"
        "One row per epoch. `loss` is the mean cross-entropy at the answer position (nats; a "
        "uniform guess among four letters scores ln 4 ≈ 1.39), `prior` the mean LoRA prior term "
        "before λ, `tokens` the tokens seen, `elapsed_s` the epoch's wall time. The loss should "
        "fall below the uniform guess within an epoch or two but not reach 0: in the `tiny` "
        "profile part of the training labels are resampled at random (the `noisy` group).",
        "import pandas as pd\n\npd.DataFrame(logs).set_index('epoch')",
    ],
    "03_inference.ipynb": [
        "# 03 · Letter logits of every epoch\n\n"
        "**What.** For every evaluation question, every saved epoch of one member is asked the "
        "question once, and we keep only what the uncertainty measures need: the logits of the K "
        "answer letters at the answer position and the log-sum-exp over the whole vocabulary. Both "
        "of the paper's read-outs stay possible from these: the letters renormalised, or the letters "
        "plus one *other* class for the rest of the vocabulary.\n\n"
        "**Why store logits, not metrics.** Every number and figure downstream (accuracy, NLL, "
        "ECE, entropies, mutual information, any ensemble size) is a function of this table, so "
        "the expensive forward passes run once. `member = -1` evaluates the prior, epoch 0: the "
        "base model, identical for all members, evaluated once and shared.\n\n"
        "**Output.** `data/logits/member-{m}.parquet` (or `prior.parquet`), one row per "
        "(member, epoch, eval set, question), float32.",
        (
            "parameters",
            PARAMETERS + "\nmember: int = -1  # the member to evaluate; -1: the prior (epoch 0)",
        ),
        SETUP,
        "from lorauq.pipeline import infer\n\npath = infer(params, None if member < 0 else member, layout)\npath",
        "## A look at the table\n"
        "Questions per epoch and eval set. Every epoch must hold the same counts: a gap means an "
        "epoch's checkpoint was missing or incomplete. The prior has epoch 0 only; a member has "
        "epochs 1 … `train.epochs`.",
        "from lorauq.store import read_logits\n\ntable = read_logits(path)\n"
        "table.groupby(['epoch', 'eval_set']).size().unstack()",
    ],
    "04_figures.ipynb": [
        "# 04 · What the ensemble learned, what it forgot, and when to trust it\n\n"
        "From the stored letter logits we compute, per eval set and epoch, the ensemble's accuracy, "
        "NLL, ECE (10 equal-width bins, as a fraction) and Brier score, and the decomposition of "
        "predictive entropy H(p̄) into expected entropy (aleatoric) and mutual information "
        "(epistemic), all in nats.",
        ("parameters", PARAMETERS),
        SETUP,
        "from lorauq.pipeline import draw_figures, ensemble_logits, write_metrics, write_tables\n\n"
        "logits = ensemble_logits(params, layout)\nmetrics = write_metrics(params, logits, layout)\n"
        "tables = write_tables(params, logits, layout)\nfigures = draw_figures(params, tables, layout)",
        "## Headline numbers\n`prior` is epoch 0 (the base model), `final` the last epoch, for the full ensemble.",
        "import pandas as pd\n\npd.DataFrame({k: pd.DataFrame(metrics[k]).stack() for k in ('prior', 'final')})",
        "## Fig A · Accuracy, NLL and ECE over epochs\n"
        "One row per eval set. *ensemble* is the M-member mean prediction; *member mean* averages "
        "the single members' metrics (the paper's M = 1). Ensembling mostly curbs the rise of NLL "
        "and ECE once fine-tuning over-fits.",
        "from IPython.display import Image\n\nImage(filename=str(figures['fig_a_metrics_over_epochs'][0]))",
        "## Fig C · Predictive entropy against mutual information\n"
        "2-D histograms (log colour) of every question, right answers above wrong ones, at a few "
        "epochs. Wrong answers should sit to the right (more entropy) and higher (more disagreement).",
        "Image(filename=str(figures['fig_c_entropy_vs_mi'][0]))",
        "## What was learned and what was forgotten\n"
        "For every epoch against epoch 0: questions that stayed right, were *learned* (wrong → right), "
        "were *forgotten* (right → wrong) or stayed wrong.",
        "Image(filename=str(figures['learned_forgotten'][0]))",
        "tables['transitions'].query('transition == \"forgotten\"').pivot(index='epoch', columns='eval_set', values='count')",
        "## When to trust it\n"
        "Reliability diagrams (confidence against accuracy), risk–coverage curves (error rate of the "
        "most confident fraction of questions) and ROC curves for telling out-of-domain questions "
        "from in-domain ones by entropy, mutual information or 1 − max probability.",
        "Image(filename=str(figures['reliability'][0]))",
        "Image(filename=str(figures['risk_coverage'][0]))",
        "Image(filename=str(figures['ood_roc'][0])) if 'ood_roc' in figures else None",
        "## Ensemble size and subjects",
        "Image(filename=str(figures['ensemble_size'][0]))",
        "Image(filename=str(figures['subjects'][0]))",
    ],
}


def build(cells: list) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for cell in cells:
        if isinstance(cell, tuple):
            code = new_code_cell(cell[1])
            code.metadata["tags"] = [cell[0]]
            nb.cells.append(code)
        elif cell.startswith("#") and not cell.startswith("# Parameters"):
            nb.cells.append(new_markdown_cell(cell))
        else:
            nb.cells.append(new_code_cell(cell))
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index:02d}"
    return nb


def main() -> None:
    folder = Path(__file__).resolve().parents[1] / "notebooks"
    folder.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nbformat.write(build(cells), folder / name)
        print(folder / name)


if __name__ == "__main__":
    main()
