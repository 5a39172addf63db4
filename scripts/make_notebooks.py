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

PARAMETERS = """# Parameters (papermill injects overrides after this cell).
params_file = "params.yaml"  # the experiment's parameters, relative to the repository root
overrides = {}  # dotted keys over params.yaml, e.g. {"train.epochs": 2}
root = ""  # repository root; "" = found from the working folder"""

NOTEBOOKS = {
    "01_base.ipynb": [
        "# 01 · The base model\n\n"
        "Every ensemble member starts from the same frozen base. In the `paper` profile that is "
        "Mistral-7B-v0.1 and this notebook only records which one. In the offline `tiny` profile it "
        "**builds** the base: a tokenizer trained on the synthetic world, a Mistral-architecture model "
        "of a few hundred thousand parameters, and a short full pre-training on the *known* questions "
        "— LoRA on a random base does not learn, so the prior must be real.",
        ("parameters", PARAMETERS),
        SETUP,
        "from lorauq.pipeline import build_base\n\nbuild_base(params, layout)",
        "## What the base knows\nThe pre-training summary (parameters, vocabulary, final loss):",
        "pretraining = layout.base / 'pretraining.json'\n"
        "print(pretraining.read_text() if pretraining.exists() else (layout.base / 'base.json').read_text())",
    ],
    "02_finetune.ipynb": [
        "# 02 · Fine-tune one ensemble member\n\n"
        "Member *m* gets a fresh LoRA adapter whose initialisation and data order come from seed *m*; "
        "nothing else differs between members. The loss is the paper's: cross-entropy over the full "
        "vocabulary at the answer position, plus the LoRA prior λ·Σ‖B·A‖²_F. A checkpoint (peft's "
        "safetensors adapter + optimizer state) is written after every epoch under "
        "`data/adapters/member-{m}/epoch-{e}/`; a killed run resumes after its last complete epoch.",
        ("parameters", PARAMETERS + "\nmember = 0  # which member (its seed) to train"),
        SETUP,
        "from lorauq.pipeline import finetune\n\nlogs = finetune(params, member, layout)",
        "## Training curve\nMean loss per epoch (cross-entropy at the answer position) and the prior term:",
        "import pandas as pd\n\npd.DataFrame(logs).set_index('epoch')",
    ],
    "03_inference.ipynb": [
        "# 03 · Letter logits of every epoch\n\n"
        "For each evaluation question we keep only what the uncertainty measures need: the logits of "
        "the K answer letters at the answer position and the log-sum-exp over the whole vocabulary "
        "(so both read-outs — letters renormalised, or letters + an *other* class — stay possible). "
        "`member = -1` evaluates the prior (epoch 0, the base model, identical for all members) once.",
        ("parameters", PARAMETERS + "\nmember = -1  # a member id, or -1 for the prior (epoch 0)"),
        SETUP,
        "from lorauq.pipeline import infer\n\npath = infer(params, None if member < 0 else member, layout)\npath",
        "## A look at the table\nOne row per (member, epoch, eval set, question):",
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
