"""The GPU results files, ``benchmarks/results/<card>-<date>.json``: their schema and reader.

A GPU is at hand only now and then, so every GPU number the docs quote is kept as data: one
file per measuring run of ``scripts/gpu_evidence.py`` (or one transcribed from a table that
was published before these files existed, its ``source`` saying so), and
``scripts/gpu_tables.py`` writes the GPU tables of README.md and docs/gpu.md from them. This
module is the contract between the two: what a file must hold, the id of each row, and a
reader that fails with the file and key at fault rather than with a ``KeyError`` later.

A row is one measurement on random weights of the model geometry the file names: ``phase``
(``train`` or ``evaluate``), ``base`` (``float32``, ``bfloat16`` or ``4bit``, a 4-bit NF4 base
computing in ``compute_dtype``), ``members`` (1, or several trained or evaluated jointly in
one pass), ``batch_per_member`` (training questions per member per step) or ``batch_tokens``
(evaluation's token budget per pass), and what was measured: tokens/s and questions/s (of
all members together), TFLOP/s counted as ``flops_per_token[phase]`` × N per token (N the
block parameters), its fraction of the matmul peak measured in ``peak_dtype`` (in the same
run), and the peak GPU memory.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lorauq.errors import DataError  # noqa: E402

SCHEMA = "lorauq-gpu-results/1"
RESULTS = Path("benchmarks/results")
PHASES = ("train", "evaluate")
BASES = ("float32", "bfloat16", "4bit")
DTYPES = ("float32", "bfloat16", "float16")
#: 4·N per trained token (forward, and backward through the activations: frozen weights get
#: no gradient), 2·N per evaluated token.
FLOPS_PER_TOKEN = {"train": 4, "evaluate": 2}
TRANSCRIBED = "transcribed from the table measured on"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

_NUMBER = (int, float)
#: Row key -> (accepted types, required). ``None`` among the types: the key may be null.
ROW_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "id": ((str,), True),
    "phase": ((str,), True),
    "base": ((str,), True),
    "compute_dtype": ((str,), True),
    "quantization": ((str,), True),
    "compile": ((bool,), True),
    "members": ((int,), True),
    "batch_per_member": ((int, type(None)), True),
    "batch_tokens": ((int, type(None)), True),
    "tokens_per_s": (_NUMBER, True),
    "questions_per_s": (_NUMBER, True),
    "tflops": (_NUMBER, True),
    "peak_dtype": ((str,), True),
    "fraction_of_peak": (_NUMBER, True),
    "peak_memory_gib": ((*_NUMBER, type(None)), True),
    "estimated_s": ((*_NUMBER, type(None)), False),
    "seconds": ((*_NUMBER, type(None)), False),
    "timed": ((dict, type(None)), False),
}
TOP_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "schema": ((str,), True),
    "source": ((str,), True),
    "date": ((str,), True),
    "finished": ((bool,), True),
    "environment": ((dict,), True),
    "model": ((dict,), True),
    "flops_per_token": ((dict,), True),
    "peaks_tflops": ((dict,), True),
    "rows": ((list,), True),
    "skipped": ((list,), True),
}


def row_id(base: str, phase: str, members: int, batch: int | None, compile: bool = False) -> str:
    """``bfloat16-train-5x8`` (5 members at 8 questions each), ``float32-evaluate-1``: the
    name a row has in every results file, so tables find "the same row" across runs."""
    shape = f"{members}x{batch}" if phase == "train" else f"{members}"
    return f"{base}-{phase}-{shape}" + ("-compile" if compile else "")


def card_slug(card: str) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3`` (the results file's prefix)."""
    return re.sub(r"[^a-z0-9]+", "-", card.lower()).strip("-") or "device"


def short_card(card: str) -> str:
    """The card as tables name it: ``NVIDIA H100 80GB HBM3`` -> ``H100 80GB HBM3``."""
    return re.sub(r"^NVIDIA\s+", "", card).strip()


def transcribed(payload: Mapping[str, Any]) -> bool:
    """A file copied from a published table: its numbers are rounded as the table printed them."""
    return str(payload.get("source", "")).startswith(TRANSCRIBED)


def _fail(where: str, message: str) -> DataError:
    return DataError(f"{where}: {message}")


def _check_keys(
    mapping: Any, spec: Mapping[str, tuple[tuple[type, ...], bool]], where: str
) -> None:
    if not isinstance(mapping, dict):
        raise _fail(where, f"expected an object, got {type(mapping).__name__}")
    for key, (types, required) in spec.items():
        if key not in mapping:
            if required:
                raise _fail(where, f"missing key {key!r}")
            continue
        value = mapping[key]
        # bool is an int to Python; a count or a number must not be true/false.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = "/".join("null" if t is type(None) else t.__name__ for t in types)
            raise _fail(f"{where}.{key}", f"expected {names}, got {value!r}")


def _check_row(row: dict, payload: Mapping[str, Any], where: str, seen: set[str]) -> None:
    _check_keys(row, ROW_KEYS, where)
    for key, allowed in (
        ("phase", PHASES),
        ("base", BASES),
        ("compute_dtype", DTYPES),
        ("peak_dtype", DTYPES),
        ("quantization", ("none", "4bit")),
    ):
        if row[key] not in allowed:
            raise _fail(f"{where}.{key}", f"{row[key]!r} is not one of {list(allowed)}")
    if (row["base"] == "4bit") != (row["quantization"] == "4bit"):
        raise _fail(f"{where}.quantization", f"{row['quantization']!r} with base {row['base']!r}")
    if row["members"] < 1:
        raise _fail(f"{where}.members", f"must be >= 1, got {row['members']}")
    size_key = "batch_per_member" if row["phase"] == "train" else "batch_tokens"
    if not isinstance(row[size_key], int) or row[size_key] < 1:
        raise _fail(f"{where}.{size_key}", f"a {row['phase']} row needs a positive integer")
    batch = row["batch_per_member"] if row["phase"] == "train" else None
    expected = row_id(row["base"], row["phase"], row["members"], batch, row["compile"])
    if row["id"] != expected:
        raise _fail(f"{where}.id", f"{row['id']!r} does not match the row, expected {expected!r}")
    if row["id"] in seen:
        raise _fail(f"{where}.id", f"{row['id']!r} appears twice")
    seen.add(row["id"])
    if not row["tokens_per_s"] > row["questions_per_s"] > 0:
        raise _fail(where, "needs tokens_per_s > questions_per_s > 0")
    if not 0 < row["fraction_of_peak"] <= 1:
        raise _fail(f"{where}.fraction_of_peak", f"{row['fraction_of_peak']} outside (0, 1]")
    # The TFLOP/s follow from the tokens/s; rounded as printed in a transcribed table.
    rel = 0.01 if transcribed(payload) else 1e-6
    n_blocks = payload["model"]["block_parameters"]
    flops = payload["flops_per_token"][row["phase"]] * n_blocks * row["tokens_per_s"] / 1e12
    if not math.isclose(row["tflops"], flops, rel_tol=rel):
        raise _fail(
            f"{where}.tflops",
            f"{row['tflops']} but {payload['flops_per_token'][row['phase']]}·N·tokens/s "
            f"is {flops:.4g}",
        )
    peak = payload["peaks_tflops"].get(row["peak_dtype"])
    if peak is None and not transcribed(payload):
        raise _fail(f"{where}.peak_dtype", f"no measured peak for {row['peak_dtype']!r}")
    if peak is not None and not math.isclose(
        row["fraction_of_peak"], row["tflops"] / peak, rel_tol=rel
    ):
        raise _fail(f"{where}.fraction_of_peak", f"is not tflops / the {row['peak_dtype']} peak")


def validate(payload: Any, where: str) -> None:
    """Raise :class:`DataError` naming ``where`` and the key at fault if ``payload`` is not a
    results file of this schema; return quietly if it is."""
    _check_keys(payload, TOP_KEYS, where)
    if payload["schema"] != SCHEMA:
        raise _fail(f"{where}.schema", f"{payload['schema']!r}, expected {SCHEMA!r}")
    if not _DATE.fullmatch(payload["date"]):
        raise _fail(f"{where}.date", f"{payload['date']!r} is not YYYY-MM-DD")
    card = payload["environment"].get("card")
    if not isinstance(card, str) or not card:
        raise _fail(f"{where}.environment.card", "missing: every number must name its card")
    n_blocks = payload["model"].get("block_parameters")
    if not isinstance(n_blocks, int) or n_blocks <= 0:
        raise _fail(
            f"{where}.model.block_parameters", f"expected a positive integer, got {n_blocks!r}"
        )
    if payload["flops_per_token"] != FLOPS_PER_TOKEN:
        raise _fail(f"{where}.flops_per_token", f"expected {FLOPS_PER_TOKEN}")
    for dtype, peak in payload["peaks_tflops"].items():
        if dtype not in DTYPES or not (peak is None or (isinstance(peak, _NUMBER) and peak > 0)):
            raise _fail(f"{where}.peaks_tflops.{dtype}", f"{peak!r} is not a positive number")
    seen: set[str] = set()
    for i, row in enumerate(payload["rows"]):
        _check_row(row, payload, f"{where}.rows[{i}]", seen)
    for i, skip in enumerate(payload["skipped"]):
        if not (isinstance(skip, dict) and isinstance(skip.get("id"), str) and skip.get("reason")):
            raise _fail(f"{where}.skipped[{i}]", "expected {'id': ..., 'reason': ...}")


def read_results(path: Path) -> dict[str, Any]:
    """One results file, validated."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    validate(payload, str(path))
    return payload


def load_all(folder: Path) -> list[dict[str, Any]]:
    """Every results file of ``folder``, oldest first (by date, then name); each carries its
    file name under ``"file"``."""
    files = []
    for path in sorted(folder.glob("*.json")):
        payload = read_results(path)
        payload["file"] = path.name
        files.append(payload)
    return sorted(files, key=lambda p: (p["date"], p["file"]))
