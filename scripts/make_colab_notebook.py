"""Write ``notebooks/colab_paper.ipynb``: the paper profile, one member, on a Colab GPU.

Generated, unlike the numbered notebooks (edited in JupyterLab, paired with scripts), because
it is not a pipeline stage: DVC never runs it, it drives DVC. ``tests/test_colab_notebook.py`` checks that every file and parameter it
names exists, so edit the cells here and rerun ``python scripts/make_colab_notebook.py``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

#: Where the README's "Open in Colab" badge and the clone cell point; change both together.
REPO_URL = "https://github.com/OWNER/lorauq"
NOTEBOOK = "notebooks/colab_paper.ipynb"

# Cell kinds: "md", "code", or "parameters" (a code cell tagged for papermill).
CELLS: list[tuple[str, str]] = [
    (
        "md",
        "# lorauq on Colab · the paper profile, one ensemble member\n\n"
        "Fine-tunes **one** LoRA member of Mistral-7B-v0.1 on CommonsenseQA (the paper's "
        "settings, `profile: paper` in `params.yaml`) and evaluates it on CQA, MMLU STEM and "
        "MMLU social sciences after every epoch, through the repository's own DVC pipeline. "
        "Run the cells in order on a GPU runtime (*Runtime → Change runtime type*).\n\n"
        "| card | settings | why |\n"
        "|---|---|---|\n"
        "| A100 / L4 / H100 (compute capability ≥ 8.0) | `bfloat16`, no quantisation (the "
        "profile's default) | bf16 has hardware support; the 7B base is ≈ 15 GB, training at "
        "batch 8 peaked at 16.8 GiB on an H100 |\n"
        "| T4 (16 GB, capability 7.5) | `float16` + `4bit` (QLoRA: NF4 base via bitsandbytes) "
        "| a T4 has no bf16 hardware: torch *emulates* it without an error, many times slower; "
        "bf16 weights (15 GB) also leave no room for training. 4-bit training at batch 8 "
        "peaked at 7.3 GiB |\n\n"
        "One member is ≈ 1/5 of the paper's ensemble: enough to see accuracy, calibration and "
        "entropy move over epochs (mutual information needs ≥ 2 members; add them later with "
        "`-S 'members=[0,1]'`, DVC reruns only the new ones).",
    ),
    (
        "parameters",
        "# Parameters (papermill -p NAME VALUE overrides them; in Colab, edit them here).\n"
        f'REPO_URL: str = "{REPO_URL}"  # the repository to clone\n'
        'SAVE: str = "/content/drive/MyDrive/lorauq-run"  # Drive folder: DVC remote + checkpoints',
    ),
    ("md", "## 1 · The GPU"),
    ("code", "!nvidia-smi"),
    (
        "code",
        "import torch\n\n"
        'assert torch.cuda.is_available(), "no GPU: Runtime > Change runtime type > GPU"\n'
        "major, minor = torch.cuda.get_device_capability()\n"
        "gib = torch.cuda.get_device_properties(0).total_memory / 2**30\n"
        "# bfloat16 needs compute capability >= 8.0; a T4 (7.5) would emulate it, slowly.\n"
        "BF16 = major >= 8\n"
        "print(\n"
        '    f"{torch.cuda.get_device_name()}: capability {major}.{minor}, {gib:.1f} GiB, "\n'
        '    f"torch {torch.__version__}, bf16 hardware: {BF16}"\n'
        ")\n\n"
        "# The experiment's DVC arguments, used by section 6 and by the resume steps: the paper\n"
        "# profile with one member (0) of its main ensemble (lora_l2); the other two ensembles\n"
        "# and Fig B's rank-32 reference are removed (~key), agreement falls back to halves.\n"
        "ONE_MEMBER = (\n"
        "    \"-S profile=paper -S 'paper.members=[0]' -S '~paper.ensembles.reg_l2' \"\n"
        "    \"-S '~paper.ensembles.r32' -S paper.analysis.reference=halves\"\n"
        ")\n"
        "# A100 / L4 / H100: a bfloat16 base (the profile's float32, the authors' setting,\n"
        "# needs about 30 GB for the weights alone).\n"
        'BF16_ARGS = ONE_MEMBER + " -S paper.base.dtype=bfloat16"\n'
        "# T4: float16 compute, 4-bit NF4 base with double quantisation (QLoRA).\n"
        'T4_ARGS = ONE_MEMBER + " -S paper.base.dtype=float16 -S paper.base.quantization=4bit"\n'
        "ARGS = BF16_ARGS if BF16 else T4_ARGS\n"
        "# Section 9 (optional): the rival methods that reuse member 0 as it is; appended to\n"
        "# ARGS they change no training setting, so DVC keeps member 0 and runs only them.\n"
        "METHODS_ARGS = \" -S 'paper.methods.run=[single,checkpoints,laplace]'\"",
    ),
    (
        "md",
        "## 2 · The code\n\n"
        "Colab already ships a CUDA build of torch, and `requirements.txt` pins everything "
        "**except** torch for that reason. Do **not** install `requirements-cpu.txt` here: it "
        "pins the CPU build of torch and would replace Colab's CUDA one. If pip upgrades numpy "
        "or pandas, Colab asks to restart the session: do so, then continue with the next "
        "cell (the clone is kept).",
    ),
    (
        "code",
        "!test -d /content/lorauq || git clone {REPO_URL} /content/lorauq\n"
        "%cd /content/lorauq\n"
        "!pip install -q -r requirements.txt && pip install -q --no-deps -e .\n"
        "# `dvc exp run` records each experiment as a git commit: it needs an identity.\n"
        '!git config user.email "colab@localhost" && git config user.name "colab"',
    ),
    (
        "md",
        "## 3 · Access to Mistral-7B-v0.1 (gated)\n\n"
        "Accept the licence on the model's hub page once, then give the session a read token: "
        "best as a Colab secret named `HF_TOKEN` (the key icon on the left; the notebook reads "
        "it without printing it), otherwise the login box below. Skip this cell if the model "
        "is not gated for you.",
    ),
    (
        "code",
        "import os\n\n"
        "try:\n"
        "    from google.colab import userdata\n\n"
        '    os.environ["HF_TOKEN"] = userdata.get("HF_TOKEN")  # never printed\n'
        "except Exception:  # no secret (or not on Colab): ask interactively\n"
        "    from huggingface_hub import notebook_login\n\n"
        "    notebook_login()",
    ),
    (
        "md",
        "## 4 · Check the card before spending hours on it\n\n"
        "`scripts/gpu_check.py` builds a **random-weight** model of Mistral-7B's exact "
        "geometry (no download), runs paper-profile training steps and evaluation batches "
        "through lorauq's own code, and prints tokens/s, TFLOP/s and peak memory. If it runs "
        "out of memory, the real run would too.",
    ),
    (
        "code",
        "if BF16:\n"
        "    # batch 8 is the paper's; batch 32 would need ≈ 27 GiB, more than an L4 or A10\n"
        "    !python scripts/gpu_check.py --dtype bfloat16 --quantization none --batch-sizes 8\n"
        "else:\n"
        "    !python scripts/gpu_check.py --dtype float16 --quantization 4bit --batch-sizes 8",
    ),
    (
        "md",
        "## 5 · Keep results when the session ends\n\n"
        "A Colab VM can be reclaimed at any time and takes its disk with it. Mount Google "
        "Drive and keep two things there:\n\n"
        "- a **DVC remote** (`dvc push` / `dvc pull`): every finished stage's outputs. A "
        "bucket works the same way: `pip install dvc-gs` then "
        "`dvc remote add -d -f store gs://BUCKET/lorauq` (or `dvc-s3` and `s3://…`);\n"
        "- a **sync folder**, refreshed every 5 minutes in the background while the pipeline "
        "runs: DVC's cache, `dvc.lock`, `params.yaml` and the per-epoch checkpoints of the "
        "member being trained (`data/adapters/lora_l2/members-0/member-0/epoch-*`; each is written under a "
        "temporary dot-name and renamed when complete, so a copy never holds half an epoch).",
    ),
    (
        "code",
        "from google.colab import drive\n\n"
        'drive.mount("/content/drive")\n'
        '!mkdir -p "{SAVE}/dvc-remote" "{SAVE}/sync"\n'
        '!dvc remote add -d -f drive "{SAVE}/dvc-remote"',
    ),
    (
        "code",
        "# Background sync (stops with the session); --exclude '.*' skips unfinished epochs.\n"
        "!nohup bash -c 'while sleep 300; do mkdir -p data/adapters .dvc/cache && "
        'rsync -a --exclude ".*" data/adapters/ "{SAVE}/sync/adapters/" && '
        'rsync -a .dvc/cache/ "{SAVE}/sync/cache/" && '
        'cp dvc.lock params.yaml "{SAVE}/sync/"; done\' > /dev/null 2>&1 &',
    ),
    (
        "md",
        "## 6 · Run the paper profile for member 0\n\n"
        "`dvc exp run -S key=value` writes the values into `params.yaml` and reproduces the "
        "pipeline: `prepare` (downloads CommonsenseQA and MMLU), `base` (records the base), "
        "`prior` (epoch-0 logits of the base), `finetune@lora_l2-0` (10 epochs, a checkpoint "
        "each), `infer@lora_l2-0` (logits after every epoch) and `figures`. `dvc exp run` "
        "copies the profile's members and ensembles to the top of `params.yaml`, so the "
        "stages of `dvc.yaml` exist for member 0 of `lora_l2` only. Expect the first cell to "
        "download ≈ 15 GB of weights.",
    ),
    (
        "code",
        "# ARGS was set in section 1 from the card: bfloat16, or float16 + 4-bit on a T4.\n"
        "print(ARGS)\n"
        "!dvc exp run {ARGS}",
    ),
    ("code", '!dvc push && cp dvc.lock params.yaml "{SAVE}/"'),
    (
        "md",
        "## 7 · Where the results are\n\n"
        "| what | where |\n"
        "|---|---|\n"
        "| LoRA adapter of every epoch (peft, safetensors) + optimizer state | "
        "`data/adapters/lora_l2/members-0/member-0/epoch-*/` |\n"
        "| answer-letter logits, epoch 0 (prior) and every epoch | "
        "`data/logits/prior.parquet`, `data/logits/lora_l2/members-0.parquet` |\n"
        "| headline metrics | `reports/metrics.json` |\n"
        "| figures (PNG + PDF) | `reports/figures/png/`, `reports/figures/pdf/` |\n"
        "| executed notebooks | `reports/notebooks/` |",
    ),
    (
        "code",
        "!dvc metrics show\n!ls data/adapters/lora_l2/members-0 data/logits/lora_l2 "
        "reports/figures/png",
    ),
    (
        "code",
        "from IPython.display import Image, display\n\n"
        'display(Image("reports/figures/png/fig_a_metrics_over_epochs.png"))',
    ),
    (
        "md",
        "## 8 · Resuming after the session was cut\n\n"
        "In a fresh session run the parameters cell and sections 1–3 and 5 (not the background sync yet), then the "
        "cell below. It brings back DVC's cache, `dvc.lock` and `params.yaml` from the sync "
        "folder and restores every finished stage (`dvc checkout`).\n\n"
        "If the cut came **during fine-tuning**, do not let DVC rerun `finetune@lora_l2-0`: DVC "
        "deletes a stage's outputs before running it, so it would start again from epoch 1. "
        "Run the stage's own command instead; it resumes after the last complete epoch "
        "checkpoint (LoRA weights, AdamW state, RNGs; the data order depends only on the "
        "epoch). `dvc commit` then records the result as if DVC had run it, and "
        "`dvc exp run` does the rest. Start the background sync cell again before it.",
    ),
    (
        "code",
        '!rsync -a "{SAVE}/sync/cache/" .dvc/cache/ && cp "{SAVE}/sync/dvc.lock" '
        '"{SAVE}/sync/params.yaml" .\n'
        "!dvc checkout || true  # stages that had not finished are reported missing: expected\n"
        '!mkdir -p data/adapters && rsync -a "{SAVE}/sync/adapters/" data/adapters/\n'
        "!ls data/adapters/lora_l2/members-0/member-0",
    ),
    (
        "code",
        "# Only if finetune@lora_l2-0 had not finished: resume it, record it, then run the rest.\n"
        "!mkdir -p reports/notebooks && LORAUQ_PROGRESS=lines papermill notebooks/02_finetune.ipynb "
        "reports/notebooks/02_finetune-lora_l2-0.ipynb -k python3 --log-level WARNING "
        "-p ensemble lora_l2 -r members 0\n"
        "!dvc commit -f finetune@lora_l2-0\n"
        "!dvc exp run {ARGS}",
    ),
    (
        "md",
        "## 9 · The rival methods for member 0 (optional)\n\n"
        "Is an ensemble worth M fine-tunings? `docs/methods.md` compares it with what one "
        "member allows. Three methods reuse member 0 as trained: `single` (the member "
        "alone), `checkpoints` (a snapshot ensemble of its last 3 epochs, no GPU work) and "
        "`laplace` (a Laplace posterior over its LoRA weights, prior precision by marginal "
        "likelihood as in Laplace-LoRA: its curvature takes a backward pass per answer letter "
        "and training question, about half the cost of fine-tuning member 0 again (not "
        "measured on a GPU), then 10 evaluation passes and a Jacobian per evaluation "
        "question). They write "
        "`reports/methods.csv` and `reports/methods/png/methods.png`. `mc_dropout` trains "
        "a member of its own and `temperature` needs `-S paper.data.calibration_fraction=0.1`, "
        "which changes the training set and so retrains member 0: each doubles the bill.",
    ),
    (
        "code",
        "!pip install -q --no-deps -r requirements-laplace.txt\n"
        "!dvc exp run {ARGS}{METHODS_ARGS}\n"
        '!dvc push && cp dvc.lock params.yaml "{SAVE}/"',
    ),
    (
        "code",
        "import pandas as pd\n\n"
        "from lorauq.methods.report import summary\n\n"
        'display(summary(pd.read_csv("reports/methods.csv")))\n'
        'display(Image("reports/methods/png/methods.png"))',
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
