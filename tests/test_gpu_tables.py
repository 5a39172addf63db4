"""scripts/gpu_tables.py: every GPU number of README.md and docs/gpu.md comes from the
committed results files (benchmarks/results/*.json), names its card, and estimates say so.

The first test holds the repository to it: after a new results file, or a change to the
paper profile in params.yaml, it fails until ``python scripts/gpu_tables.py`` has been rerun.
The others run the script on a copy with a new (made-up) H100 run added and check the
tables against numbers computed here by the documented formulas.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_results  # noqa: E402
import gpu_tables  # noqa: E402

from lorauq.errors import DataError  # noqa: E402

TRANSCRIBED = ROOT / "benchmarks" / "results" / "nvidia-h100-80gb-hbm3-2026-11-26.json"
CARDS = ("H100 80GB HBM3", "T4", "L4", "A100")
N = 6_979_588_096  # Mistral-7B's block parameters


def _script(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_tables.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_docs_are_in_step_with_the_results_files():
    proc = _script("--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# The H100 table docs/gpu.md published before results files existed (commit baf7e8e):
# phase, base, batch, tokens/s, questions/s, TFLOP/s, of peak, peak memory.
PUBLISHED = """
| train | bfloat16 | 8 questions (the paper's) | 3,650 | 60.6 | 102 | 12.8 % | 16.8 GiB |
| train | bfloat16 | 32 questions | 10,328 | 170.9 | 288 | 36.1 % | 26.6 GiB |
| train | bfloat16, `train.compile: true` | 8 questions | 8,046 | 134.9 | 225 | 28.8 % | 15.8 GiB |
| train | bfloat16, `train.compile: true` | 32 questions | 14,281 | 237.2 | 399 | 51.2 % | 22.3 GiB |
| evaluate | bfloat16 | 16,384-token batches | 27,877 | 233.0 | 389 | 48.7 % | 15.5 GiB |
| train | 4-bit NF4 | 8 questions | 1,989 | 33.0 | 56 | 7.0 % | 7.3 GiB |
| train | 4-bit NF4 | 32 questions | 8,012 | 132.6 | 224 | 28.0 % | 16.9 GiB |
| evaluate | 4-bit NF4 | 16,384-token batches | 27,513 | 230.0 | 384 | 48.1 % | 5.8 GiB |
"""


def test_the_transcribed_file_is_the_published_table():
    payload = gpu_results.read_results(TRANSCRIBED)
    assert payload["source"] == "transcribed from the table measured on 2026-11-26"
    assert payload["environment"]["card"] == "NVIDIA H100 80GB HBM3"
    assert payload["model"]["block_parameters"] == N
    published = [line.strip("| ").split(" | ") for line in PUBLISHED.strip().splitlines()]
    assert len(published) == len(payload["rows"])
    for cells, row in zip(published, payload["rows"], strict=True):
        phase, base, batch, tokens, questions, tflops, fraction, memory = cells
        assert row["phase"] == phase
        assert row["base"] == ("4bit" if base.startswith("4-bit") else "bfloat16")
        assert row["compile"] == ("compile" in base)
        if phase == "train":
            assert row["batch_per_member"] == int(batch.split()[0])
        assert row["tokens_per_s"] == float(tokens.replace(",", ""))
        assert row["questions_per_s"] == float(questions)
        assert row["tflops"] == float(tflops)
        assert row["fraction_of_peak"] == pytest.approx(float(fraction.rstrip(" %")) / 100)
        assert row["peak_memory_gib"] == float(memory.removesuffix(" GiB"))


# --------------------------------------------------------------------------- a new run


def _row(base: str, phase: str, members: int, batch: int | None, questions_s: float) -> dict:
    tokens_per_question = 60.0 if phase == "train" else 119.5
    tokens_s = questions_s * tokens_per_question
    dtype = "float32" if base == "float32" else "bfloat16"
    tflops = gpu_results.FLOPS_PER_TOKEN[phase] * N * tokens_s / 1e12
    return {
        "id": gpu_results.row_id(base, phase, members, batch),
        "phase": phase,
        "base": base,
        "compute_dtype": dtype,
        "quantization": "4bit" if base == "4bit" else "none",
        "compile": False,
        "members": members,
        "batch_per_member": batch,
        "batch_tokens": 16384 if phase == "evaluate" else None,
        "tokens_per_s": tokens_s,
        "questions_per_s": questions_s,
        "tflops": tflops,
        "peak_dtype": dtype,
        "fraction_of_peak": tflops / PEAKS[dtype],
        "peak_memory_gib": 30.0 + members if base == "float32" else 15.0 + members,
    }


PEAKS = {"float32": 51.0, "bfloat16": 790.0}
#: questions/s of a made-up H100 run (row id -> rate)
RATES = {
    ("float32", "train", 1, 8): 9.0,
    ("float32", "train", 5, 8): 12.0,
    ("float32", "evaluate", 1, None): 25.0,
    ("float32", "evaluate", 5, None): 27.0,
    ("bfloat16", "train", 1, 8): 61.0,
    ("bfloat16", "train", 5, 8): 150.0,
    ("bfloat16", "evaluate", 1, None): 240.0,
    ("bfloat16", "evaluate", 5, None): 260.0,
    ("bfloat16", "train", 1, 32): 170.0,
    ("4bit", "train", 1, 8): 34.0,
    ("4bit", "evaluate", 1, None): 231.0,
}


def _new_run() -> dict:
    payload = json.loads(TRANSCRIBED.read_text(encoding="utf-8"))
    payload.update(
        source="measured by scripts/gpu_evidence.py",
        date="2026-12-24",
        environment={**payload["environment"], "driver": "580.1", "git_commit": "ab" * 20},
        peaks_tflops=dict(PEAKS),
        rows=[_row(*key, rate) for key, rate in RATES.items()],
    )
    return payload


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    for name in ("README.md", "docs/gpu.md", "params.yaml", "benchmarks/results"):
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, target)
    new = tmp_path / "benchmarks" / "results" / "nvidia-h100-80gb-hbm3-2026-12-24.json"
    new.write_text(json.dumps(_new_run(), indent=2), encoding="utf-8")
    return tmp_path


def _block(text: str, name: str) -> str:
    start, end = gpu_tables.markers(name)
    return text.split(start)[1].split(end)[0]


def _hours(questions_by_rate: list[tuple[float, float]]) -> str:
    return f"{sum(q / r for q, r in questions_by_rate) / 3600:,.1f}"


def test_a_new_run_rewrites_every_table_from_its_rows(repo_copy: Path):
    assert _script("--check", "--root", str(repo_copy)).returncode == 1  # stale now
    proc = _script("--root", str(repo_copy))
    assert proc.returncode == 0, proc.stderr
    assert _script("--check", "--root", str(repo_copy)).returncode == 0
    doc = (repo_copy / "docs" / "gpu.md").read_text(encoding="utf-8")
    readme = (repo_copy / "README.md").read_text(encoding="utf-8")

    throughput = _block(doc, "throughput")
    # the new run first, then the transcribed one (its compile rows stay visible)
    assert throughput.index("2026-12-24") < throughput.index("2026-11-26")
    assert (
        "matmul peaks measured in the same run: float32 (TF32 off) 51, bfloat16 790" in throughput
    )
    assert (
        "| H100 80GB HBM3 | train | float32 (TF32 off) | 5 × 8 questions jointly | 720 | 12.0 |"
        in throughput
    )
    assert "`train.compile: true`" in throughput

    # the paper profile as configured: 3 ensembles × 5 members × 10 epochs, a stage per
    # member, float32: one member's rows; the prior once, then 150 member-epochs
    member_epochs = 3 * 5 * 10
    r = {key[:3]: rate for key, rate in RATES.items() if key[3] in (8, None)}  # batch 8
    fp32_train, fp32_eval = r[("float32", "train", 1)], r[("float32", "evaluate", 1)]
    fp32 = _hours([(member_epochs * 9741, fp32_train), (member_epochs * 7320 + 7320, fp32_eval)])
    bf16_train, bf16_eval = r[("bfloat16", "train", 1)], r[("bfloat16", "evaluate", 1)]
    bf16 = _hours([(member_epochs * 9741, bf16_train), (member_epochs * 7320 + 7320, bf16_eval)])
    joint = _hours(
        [
            (member_epochs * 9741, r[("float32", "train", 5)]),
            (member_epochs * 7320, r[("float32", "evaluate", 5)]),
            (7320, fp32_eval),  # the prior: the base alone
        ]
    )
    cost = _block(doc, "cost")
    configured = (
        "| `make paper`: 3 ensembles × 5 members × 10 epochs, a stage per member | H100 80GB HBM3 |"
    )
    assert f"{configured} float32 (TF32 off), the profile's | {fp32} |" in cost
    assert f"{configured} bfloat16 | {bf16} |" in cost
    assert f"float32 (TF32 off), the profile's | {joint} |" in cost  # members "0-4", jointly
    assert "31.0 GiB" in cost  # float32, one member: the larger of training and evaluation
    # Colab, one member of lora_l2 on a T4, an estimate: evaluation × the datasheet peaks'
    # ratio k = 989.4/65; training at batch 8 was host-bound on the H100, so × k/3
    k = 989.4 / 65
    t4 = _hours([(10 * 9741, 34.0 * 3 / k), (10 * 7320, 231.0 / k), (7320, 231.0 / k)])
    assert f"| T4 | 4-bit NF4 (float16 compute) | ≈ {t4} (estimate) |" in cost
    assert "host-bound training: max(1, ratio/3)" in cost

    summary = _block(readme, "cost-summary")
    assert f"float32 (TF32 off), the profile's | {fp32} | 31.0 GiB |" in summary
    row = next(line for line in readme.splitlines() if line.startswith(gpu_tables.PATH_ROW))
    assert f"≈ {fp32} GPU-h in float32 (H100 80GB HBM3); ≈ {bf16} GPU-h in bfloat16" in row
    assert row.count(" | ") == 5  # the row keeps its six cells

    memory = _block(doc, "memory")
    assert (
        "| H100 80GB HBM3 | float32 (TF32 off) | 29.0 GB | 31.0 GiB | not measured | 35.0 GiB |"
        in memory
    )
    # batch 32 bf16 comes from the new run (16.0 GiB), not the transcribed 26.6 GiB
    assert "| H100 80GB HBM3 | bfloat16 | 14.5 GB | 16.0 GiB | 16.0 GiB | 20.0 GiB |" in memory


def _tables(text: str) -> list[list[str]]:
    """The markdown tables of ``text``, each as its lines (header first)."""
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return [*tables, current] if current else tables


def test_every_number_names_its_card_and_estimates_say_so(repo_copy: Path):
    assert _script("--root", str(repo_copy)).returncode == 0
    doc = (repo_copy / "docs" / "gpu.md").read_text(encoding="utf-8")
    readme = (repo_copy / "README.md").read_text(encoding="utf-8")
    blocks = [_block(doc, n) for n in ("throughput", "memory", "cost")]
    blocks.append(_block(readme, "cost-summary"))
    checked = 0
    for block in blocks:
        for table in _tables(block):
            header, rows = table[0], table[2:]
            for line in rows:
                if not re.search(r"\d", line.replace("1 ×", "").replace("5 ×", "")):
                    continue
                checked += 1
                assert any(card in line or card in header for card in CARDS), line
                measured_card = "H100 80GB HBM3" in line or "H100 80GB HBM3" in header
                if not measured_card and "not measured yet" not in line:
                    assert "(estimate)" in line, line
                if "estimate" in header:  # the protocol table: every number an estimate
                    assert "≈" in line, line
    assert checked > 20
    cost = _block(doc, "cost")
    for line in cost.splitlines():
        if line.startswith("| Colab") and (
            "| T4 |" in line or "| L4 |" in line or "| A100 |" in line
        ):
            assert "datasheet peaks" in line, line


def test_protocol_step_time_is_the_line_through_two_measured_rows():
    # step seconds = 0.1 + 1e-4 · tokens, at 60 tokens per question (``_line_rows``)
    found = gpu_tables.protocol_cost(_line_rows())
    scale = gpu_tables.LLAMA2_7B_BLOCK_PARAMETERS / N
    assert found.step_s == pytest.approx(0.1 + 1e-4 * scale * 4 * 300)
    assert found.per_run_h == pytest.approx(5000 * found.step_s / 3600)
    assert found.eval_pass_h == pytest.approx(7173 * 300 * scale / 30_000 / 3600)
    # MLE: one run per task (6) and one pass, per seed (3)
    assert found.method_hours(1, 1) == pytest.approx(3 * (6 * found.per_run_h + found.eval_pass_h))


def test_no_measurements_leave_the_costs_not_measured_yet():
    params = gpu_tables.load_params(ROOT / "params.yaml", {"profile": "paper"})
    assert gpu_tables.cost_rows(params, {}) == []
    assert gpu_tables.path_time_cell(params, {}) == " ([cost](docs/gpu.md#what-a-run-costs))"
    assert "no estimate" in gpu_tables.protocol_block(None)
    assert gpu_tables.protocol_rates({}) is None
    protocol = gpu_tables.load_params(ROOT / "params.yaml", {"profile": "protocol"})
    assert gpu_tables.profile_cost(protocol, None) is None
    assert "No estimate" in gpu_tables.profile_block(protocol, None)


# --------------------------------------------------------------------------- bad files


def _broken(change) -> dict:
    payload = copy.deepcopy(_new_run())
    change(payload)
    return payload


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["environment"].pop("card"), "x.json.environment.card: missing"),
        (lambda p: p.pop("rows"), "x.json: missing key 'rows'"),
        (lambda p: p.update(date="24.12.2026"), "x.json.date: '24.12.2026' is not YYYY-MM-DD"),
        (lambda p: p["rows"][0].update(tflops=1.0), "x.json.rows[0].tflops: 1.0 but 4·N·tokens/s"),
        (
            lambda p: p["rows"][2].update(id="float32-evaluate-7"),
            "x.json.rows[2].id: 'float32-evaluate-7'",
        ),
        (
            lambda p: p["rows"].append(p["rows"][0]),
            "x.json.rows[11].id: 'float32-train-1x8' appears twice",
        ),
        (
            lambda p: p["rows"][1].update(members=True),
            "x.json.rows[1].members: expected int, got True",
        ),
        (lambda p: p["peaks_tflops"].pop("float32"), "x.json.rows[0].peak_dtype: no measured peak"),
        (
            lambda p: p["rows"][3].update(fraction_of_peak=0.9),
            "x.json.rows[3].fraction_of_peak: is not",
        ),
        (
            lambda p: p["rows"][4].update(phase="infer"),
            "x.json.rows[4].phase: 'infer' is not one of",
        ),
    ],
)
def test_a_malformed_results_file_is_named_with_its_key(tmp_path, change, message):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(_broken(change)), encoding="utf-8")
    with pytest.raises(DataError) as info:
        gpu_results.read_results(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_colab_rows_quote_the_notebook_s_estimates():
    """One cost model: the committed tables' Colab rows equal ``lorauq.colab.estimate_hours``
    (which the notebook, docs/colab.md and the README's path row quote)."""
    from lorauq import colab

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    summary = _block(readme, "cost-summary")
    for run, card, label in (
        ("one_member", "T4", "one member of `lora_l2`, 10 epochs | T4 |"),
        ("one_member", "L4", "one member of `lora_l2`, 10 epochs | L4 |"),
        ("ensemble", "A100", "5 members of `lora_l2` jointly, 10 epochs | A100 |"),
    ):
        row = next(line for line in summary.splitlines() if label in line)
        assert f"≈ {sum(colab.estimate_hours(run, card)):.1f} (estimate)" in row, row


# ------------------------------------------------------- this repository's protocol profile

#: Held-out rows of the six tasks at ``calibration_fraction`` 0.1: round(0.1 × the training
#: split) of WinoGrande-S 640, ARC-Challenge 1,119, ARC-Easy 2,251, WinoGrande-M 2,558,
#: OpenBookQA 4,957, BoolQ 9,427.
HELD_OUT_AT_10_PERCENT = 64 + 112 + 225 + 256 + 496 + 943
VALIDATION_QUESTIONS = 1_267 + 299 + 570 + 1_267 + 500 + 3_270


def _protocol_by_hand(raw: dict, fixed_s: float, token_s: float, eval_token_s: float) -> dict:
    """GPU-hours of each line of the `protocol` profile's table over the six tasks, from the
    raw ``protocol`` section of params.yaml and Llama-2-7B's rates (a step's fixed seconds,
    seconds per trained token, seconds per evaluated token)."""
    p = raw["protocol"]
    assert p["members"] == ["0-4"] and p["methods"]["run"] == [
        "early_stopped",
        "mc_dropout",
        "laplace",
        "ivon",
    ]
    assert p["data"]["calibration_fraction"] == 0.1
    members, checkpoints = 5, len(p["train"]["checkpoint_steps"]) + 1  # and the last step
    train = p["train"]
    step = fixed_s + token_s * train["batch_size"] * train["max_length"]
    run = 6 * train["steps"] * step / 3600  # one run on each task
    validation = VALIDATION_QUESTIONS * p["infer"]["max_length"] * eval_token_s / 3600
    held = HELD_OUT_AT_10_PERCENT * p["infer"]["max_length"] * eval_token_s / 3600
    mc, la, ivon = (p["methods"][k] for k in ("mc_dropout", "laplace", "ivon"))
    lines = {
        "prior": validation,
        "ensemble": members * run + members * checkpoints * validation,
        "early_stopped": members * checkpoints * held,
        "mc_dropout": mc["runs"] * run + mc["runs"] * mc["passes"] * validation,
        "laplace": la["runs"] * la["samples"] * validation,
        "ivon": ivon["runs"] * run + ivon["runs"] * ivon["samples"] * validation,
    }
    return {**lines, "total": sum(lines.values())}


def _line_rows(card: str = "H100 80GB HBM3") -> dict:
    """Rows whose step seconds are 0.1 + 1e-4 · tokens (60 tokens a question) and whose
    evaluation reads 30,000 tokens/s, on Mistral-7B's N."""
    rows = {}
    payload = {
        "model": {"block_parameters": N},
        "date": "2026-12-24",
        "environment": {"card": card},
    }
    for batch in (8, 32):
        tokens = batch * 60
        step = 0.1 + 1e-4 * tokens
        row = {
            "id": f"bfloat16-train-1x{batch}",
            "batch_per_member": batch,
            "tokens_per_s": tokens / step,
            "questions_per_s": batch / step,
        }
        rows[row["id"]] = gpu_tables.Measured(row, payload)
    rows["bfloat16-evaluate-1"] = gpu_tables.Measured(
        {"id": "bfloat16-evaluate-1", "tokens_per_s": 30_000.0}, payload
    )
    return {card: rows}


def _raw_params(root: Path = ROOT) -> dict:
    return yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))


def test_protocol_profile_cost_is_its_params_work_at_the_protocol_rates():
    params = gpu_tables.load_params(ROOT / "params.yaml", {"profile": "protocol"})
    found = gpu_tables.profile_cost(params, gpu_tables.protocol_rates(_line_rows()))
    scale = gpu_tables.LLAMA2_7B_BLOCK_PARAMETERS / N
    hand = _protocol_by_hand(_raw_params(), 0.1, 1e-4 * scale, scale / 30_000)
    assert found.held_out_questions == HELD_OUT_AT_10_PERCENT
    by_line = {line.name: found.line_hours(line) for line in found.lines}
    assert [(line.runs, line.passes, line.held_out) for line in found.lines] == [
        (0, 1, False),  # the prior
        (5, 25, False),  # 5 members, each evaluated at 5 checkpoints
        (0, 25, True),  # early stopping: the same 25 adapters on the held-out rows
        (3, 30, False),  # MC dropout: 3 runs × 10 passes
        (0, 30, False),  # Laplace around members 0–2: 3 × 10 samples
        (3, 30, False),  # IVON: 3 runs × 10 samples
    ]
    names = ["prior", "ensemble", "early_stopped", "mc_dropout", "laplace", "ivon"]
    for name, hours in zip(names, by_line.values(), strict=True):
        assert hours == pytest.approx(hand[name], rel=1e-12), name
    assert found.total_hours() == pytest.approx(hand["total"], rel=1e-12)
    # the published table's rates are the same numbers: one step at batch 4 × 300 tokens
    published = gpu_tables.protocol_cost(_line_rows())
    assert found.run_h == pytest.approx(6 * published.per_run_h)


@pytest.mark.parametrize("train_questions", [640, 1_119, 2_251, 2_558, 4_957, 9_427, 7])
def test_held_out_rows_are_what_prepare_holds_out(train_questions: int):
    import pandas as pd

    from lorauq.stages.prepare import split_calibration

    frame = pd.DataFrame({"id": range(train_questions)})
    for fraction in (0.1, 0.25, 0.0):
        held = split_calibration(frame, fraction)[1]
        assert gpu_tables.held_out_rows(train_questions, fraction) == len(held)


def _profile_rows(block: str) -> dict[str, str]:
    """The `protocol` profile's table in a cost block: first cell -> the line."""
    table = block.split("**This repository's `protocol` profile**")[1]
    return {line.split(" | ")[0].strip("| "): line for line in _tables(table)[0][2:]}


def _new_run_rates() -> tuple[float, float, float]:
    """Llama-2-7B's rates from the made-up run's bf16 rows, by the documented line: step
    seconds at batch 8 and 32 (60 tokens a question), evaluation at 119.5 tokens a question."""
    s8, s32 = 8 / RATES[("bfloat16", "train", 1, 8)], 32 / RATES[("bfloat16", "train", 1, 32)]
    per_token = (s32 - s8) / (32 * 60 - 8 * 60)
    scale = gpu_tables.LLAMA2_7B_BLOCK_PARAMETERS / N
    evaluate = RATES[("bfloat16", "evaluate", 1, None)] * 119.5
    return s8 - per_token * 8 * 60, per_token * scale, scale / evaluate


def test_a_new_run_rewrites_the_protocol_profile_s_table(repo_copy: Path):
    assert _script("--root", str(repo_copy)).returncode == 0
    hand = _protocol_by_hand(_raw_params(repo_copy), *_new_run_rates())
    doc = (repo_copy / "docs" / "gpu.md").read_text(encoding="utf-8")
    rows = _profile_rows(_block(doc, "cost"))
    assert rows["`mc_dropout`"].startswith("| `mc_dropout` | 3 | 30 | the validation split |")
    assert rows["`early_stopped`"].startswith("| `early_stopped` | 0 | 25 | the held-out rows |")
    assert rows["`ivon`"].endswith(f"| ≈ {hand['ivon']:,.1f} |")
    assert rows["all"] == f"| all | 11 | 141 | | | **≈ {hand['total']:,.1f}** |"
    readme = (repo_copy / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if "`protocol` profile" in line)
    assert f"| H100 80GB HBM3 | bfloat16 | ≈ {hand['total']:,.1f} (estimate) |" in row


def test_more_mc_dropout_runs_in_params_change_the_table(repo_copy: Path):
    raw = _raw_params(repo_copy)
    raw["protocol"]["methods"]["mc_dropout"]["runs"] = 5
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    assert _script("--root", str(repo_copy)).returncode == 0
    hand = _protocol_by_hand(raw, *_new_run_rates())
    rows = _profile_rows(_block((repo_copy / "docs" / "gpu.md").read_text("utf-8"), "cost"))
    mc = rows["`mc_dropout`"]
    assert mc.startswith("| `mc_dropout` | 5 | 50 | the validation split | 5 runs of its own")
    assert mc.endswith(f"| ≈ {hand['mc_dropout']:,.1f} |")
    assert rows["all"] == f"| all | 13 | 161 | | | **≈ {hand['total']:,.1f}** |"
    # and the committed docs, made from runs: 3, are out of step with such a params.yaml
    shutil.copy(ROOT / "docs" / "gpu.md", repo_copy / "docs" / "gpu.md")
    shutil.copy(ROOT / "README.md", repo_copy / "README.md")
    for path in (repo_copy / "benchmarks" / "results").glob("*2026-12-24.json"):
        path.unlink()
    assert _script("--check", "--root", str(repo_copy)).returncode == 1


def test_every_method_the_registry_offers_has_a_line_and_ivon_counts_its_draws():
    params = gpu_tables.load_params(
        ROOT / "params.yaml",
        {
            "profile": "protocol",
            "protocol.methods.run": ["single", "checkpoints", "temperature", "ivon"],
            "protocol.methods.ivon.train_samples": 2,
        },
    )
    found = gpu_tables.profile_cost(params, gpu_tables.protocol_rates(_line_rows()))
    lines = {line.name: line for line in found.lines}
    assert (lines["`single`"].runs, lines["`single`"].passes) == (0, 0)
    assert (lines["`checkpoints`"].runs, lines["`checkpoints`"].passes) == (0, 0)
    # temperature: the 5 members' final adapters on the held-out rows
    temperature = lines["`temperature`"]
    assert (temperature.runs, temperature.passes, temperature.held_out) == (0, 5, True)
    assert found.line_hours(temperature) == pytest.approx(5 * found.held_out_pass_h)
    # IVON with 2 weight draws a step: each of its 3 runs costs two AdamW runs
    ivon = lines["`ivon`"]
    assert found.line_hours(ivon) == pytest.approx(
        3 * 2 * found.run_h + 30 * found.validation_pass_h
    )
    assert "2 weight draws a step" in ivon.how
    unknown = dataclasses.replace(
        params, methods=dataclasses.replace(params.methods, run=["bogus"])
    )
    with pytest.raises(
        SystemExit, match=re.escape("protocol.methods.run: no cost model for 'bogus'")
    ):
        gpu_tables.profile_lines(unknown)
