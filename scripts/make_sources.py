"""Cut the small real-data subsets the repository ships out of full CommonsenseQA/MMLU copies.

Rows are copied as they are, never rewritten: the first lines of CommonsenseQA's original
release files (``train_rand_split.jsonl``, ``dev_rand_split.jsonl``) and the first rows of each
MMLU subject's test CSV (the ``question,choice0..3,answer`` export), so every shipped file is
a prefix of its source and can be checked against it byte for byte.

Usage: ``python scripts/make_sources.py FULL_COPY_FOLDER`` (a folder holding
``commonsenseqa/`` and ``mmlu/test/``). It writes ``tests/fixtures/`` (a few dozen rows, for
the format tests) and ``data/sources/`` (a few hundred, for the ``smol`` profile).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from lorauq.atomic import write_text_atomic
from lorauq.subjects import mmlu_subjects

ROOT = Path(__file__).resolve().parents[1]

#: (folder, CQA train lines, CQA dev lines, MMLU rows per subject, MMLU groups).
TARGETS = {
    "tests/fixtures": (24, 24, 2, ("stem", "social_sciences_paper")),
    "data/sources": (300, 200, 4, ("stem", "social_sciences_paper")),
}


def head_lines(text: str, n: int) -> str:
    """The first ``n`` lines of a JSON-lines text, with their line ends."""
    lines = text.splitlines(keepends=True)
    if len(lines) < n:
        raise SystemExit(f"only {len(lines)} lines, {n} wanted")
    return "".join(lines[:n])


def head_csv_rows(text: str, n: int) -> str:
    """The header and the first ``n`` records of a CSV text, cut from the text itself (a
    record may span lines, so the cut is the line the parser read record ``n`` up to)."""
    lines = text.splitlines(keepends=True)
    reader = csv.reader(lines)
    for _ in range(n + 1):
        next(reader)
    return "".join(lines[: reader.line_num])


def build(full: Path, folder: str, cqa_train: int, cqa_dev: int, per_subject: int, groups) -> int:
    out = ROOT / folder
    written = 0
    for name, n in (("train_rand_split.jsonl", cqa_train), ("dev_rand_split.jsonl", cqa_dev)):
        text = (full / "commonsenseqa" / name).read_text(encoding="utf-8")
        write_text_atomic(out / "commonsenseqa" / name, head_lines(text, n))
        written += 1
    for group in groups:
        for subject in mmlu_subjects(group, None):
            name = f"{subject}_test.csv"
            text = (full / "mmlu" / "test" / name).read_bytes().decode("utf-8")
            write_text_atomic(out / "mmlu" / "test" / name, head_csv_rows(text, per_subject))
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("full", type=Path, help="folder with commonsenseqa/ and mmlu/test/")
    args = parser.parse_args()
    for folder, spec in TARGETS.items():
        print(folder, build(args.full, folder, *spec), "files")


if __name__ == "__main__":
    main()
