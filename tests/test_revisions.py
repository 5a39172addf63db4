"""Pinned revisions reach every hub read, and the prepared data records what was read.

No hub is reachable here, so the hub calls are captured: ``datasets.load_dataset`` and
transformers' ``from_pretrained`` are replaced by spies that record their arguments and
return rows (or stand-in objects) of the real schema. A revision dropped anywhere between
``params.yaml`` and the library call fails these tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import types
from pathlib import Path

import pytest
import torch

from lorauq.config import load_params
from lorauq.data import HUB_SOURCES, PINNED_REVISIONS, load_source
from lorauq.gguf import export_gguf_base
from lorauq.hub import rows_sha256
from lorauq.layout import Layout
from lorauq.model import load_base
from lorauq.stages import prepare

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"
FIXTURES = ROOT / "tests" / "fixtures"
SHA = "0123456789abcdef0123456789abcdef01234567"


def hub_row(hub_id: str, config: str | None) -> dict:
    """One row in the schema the hub serves for ``hub_id`` (values made up)."""
    if hub_id == "cais/mmlu":
        return {"question": "2+2?", "subject": config, "choices": list("1234"), "answer": 3}
    if hub_id == "allenai/winogrande":
        return {"sentence": "The _ is red.", "option1": "sky", "option2": "rose", "answer": "2"}
    if hub_id == "google/boolq":
        return {"question": "is it made up", "answer": True, "passage": "It is made up."}
    keyed = {
        "id": "h1",
        "question": "Which?",
        "choices": {"label": list("ABCD"), "text": ["w", "x", "y", "z"]},
        "answerKey": "B",
    }
    if hub_id == "allenai/openbookqa":
        keyed["question_stem"] = keyed.pop("question")
    return keyed


@pytest.fixture
def hub(monkeypatch) -> list[dict]:
    """Every ``datasets.load_dataset`` call, as {hub_id, config, split, revision}."""
    import datasets

    calls: list[dict] = []

    def fake_load_dataset(hub_id, config=None, *, split, revision=None, **kwargs):
        assert not kwargs, f"unexpected arguments {kwargs}"  # e.g. trust_remote_code
        calls.append({"hub_id": hub_id, "config": config, "split": split, "revision": revision})
        return datasets.Dataset.from_list([hub_row(hub_id, config)])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    return calls


#: (source, split, extra arguments, expected (hub id, config, hub split) of each call).
HUB_CASES = [
    ("commonsense_qa", "dev", {}, [("tau/commonsense_qa", None, "validation")]),
    ("arc_easy", "validation", {}, [("allenai/ai2_arc", "ARC-Easy", "validation")]),
    ("arc_challenge", "train", {}, [("allenai/ai2_arc", "ARC-Challenge", "train")]),
    ("openbookqa", "validation", {}, [("allenai/openbookqa", "main", "validation")]),
    ("winogrande_s", "train", {}, [("allenai/winogrande", "winogrande_s", "train")]),
    ("winogrande_m", "dev", {}, [("allenai/winogrande", "winogrande_m", "validation")]),
    *[
        (f"winogrande_{size}", "test", {}, [("allenai/winogrande", f"winogrande_{size}", "test")])
        for size in ("xs", "l", "xl", "debiased")
    ],
    ("boolq", "validation", {}, [("google/boolq", None, "validation")]),
    (
        "mmlu",
        "test",
        {"subjects": ["college_chemistry", "college_physics"]},
        [("cais/mmlu", "college_chemistry", "test"), ("cais/mmlu", "college_physics", "test")],
    ),
]


def test_every_hub_source_is_covered():
    assert sorted({case[0] for case in HUB_CASES}) == sorted(HUB_SOURCES)


@pytest.mark.parametrize(("source", "split", "extra", "expected"), HUB_CASES)
def test_hub_reads_pass_the_revision(hub, source, split, extra, expected):
    loaded = load_source(source, split, revision=SHA, **extra)
    assert [(c["hub_id"], c["config"], c["split"]) for c in hub] == expected
    assert [c["revision"] for c in hub] == [SHA] * len(expected)
    assert [read.revision for read in loaded.reads] == [SHA] * len(expected)
    assert [read.hub_id for read in loaded.reads] == [hub_id for hub_id, _, _ in expected]
    row = hub_row(*expected[0][:2])
    assert loaded.reads[0].sha256 == rows_sha256([row])
    assert len(loaded.frame) == len(expected)


def test_rows_hash_is_canonical():
    """Column order does not change the hash; a changed value does."""
    a = {"question": "q", "answer": True, "passage": "p"}
    b = {"passage": "p", "question": "q", "answer": True}
    assert rows_sha256([a]) == rows_sha256([b])
    assert rows_sha256([a]) != rows_sha256([{**a, "answer": False}])
    assert rows_sha256([a]) != rows_sha256([a, a])


def test_pinned_revisions_are_commit_shas():
    assert set(PINNED_REVISIONS) == {
        "tau/commonsense_qa",
        "cais/mmlu",
        "allenai/ai2_arc",
        "allenai/openbookqa",
        "allenai/winogrande",
        "google/boolq",
    }
    for hub_id, sha in PINNED_REVISIONS.items():
        assert len(sha) == 40 and set(sha) <= set("0123456789abcdef"), hub_id
    paper = load_params(PARAMS, {"profile": "paper"})
    assert paper.data.train.revision == PINNED_REVISIONS["tau/commonsense_qa"]
    assert paper.data.eval["mmlu_stem"].revision == PINNED_REVISIONS["cais/mmlu"]


@pytest.mark.slow  # runs the prepare stage
def test_paper_profile_prepare_passes_every_revision_and_records_it(hub, tmp_path):
    """The paper profile's prepare stage, end to end with the hub captured: every one of its
    hub reads (CommonsenseQA train and validation, 19 + 11 MMLU subjects) carries the
    profile's revision, and the manifest says so, read by read."""
    params = load_params(PARAMS, {"profile": "paper"})
    layout = Layout(tmp_path)
    written = prepare.run(params, layout)
    pinned = {
        "tau/commonsense_qa": params.data.train.revision,
        "cais/mmlu": params.data.eval["mmlu_stem"].revision,
    }
    assert len(hub) == 2 + 19 + 11
    assert all(call["revision"] == pinned[call["hub_id"]] for call in hub)
    manifest = json.loads(written["manifest"].read_text(encoding="utf-8"))
    assert manifest["format"] == prepare.MANIFEST_FORMAT
    tables = manifest["tables"]
    assert list(tables) == ["train", "cqa", "mmlu_stem", "mmlu_ss"]
    assert tables["train"]["file"] == "train.parquet"
    assert tables["mmlu_ss"]["file"] == "eval/mmlu_ss.parquet"
    reads = [read for table in tables.values() for read in table["reads"]]
    assert len(reads) == len(hub)
    for read, call in zip(reads, hub, strict=True):
        assert (read["hub_id"], read["config"], read["hub_split"], read["revision"]) == (
            call["hub_id"],
            call["config"],
            call["split"],
            call["revision"],
        )
        assert read["sha256"] == rows_sha256([hub_row(call["hub_id"], call["config"])])
        assert read["path"] is None and read["rows"] == 1
    assert tables["mmlu_stem"]["spec"]["revision"] == pinned["cais/mmlu"]
    assert tables["mmlu_stem"]["rows"] == 19 and tables["mmlu_ss"]["rows"] == 11


class _Stop(Exception):
    """Raised by a stand-in once the call under test has been seen."""


def _spy_transformers(monkeypatch) -> list[tuple[str, str, dict]]:
    """Capture (class, reference, kwargs) of every ``from_pretrained`` of the base model and
    tokenizer; return stand-ins that satisfy what lorauq does with them next."""
    import transformers

    seen: list[tuple[str, str, dict]] = []

    class FakeModel(torch.nn.Linear):
        @property
        def config(self):  # what export_gguf_base reads after both loads
            raise _Stop

    def model(cls, reference, **kwargs):
        seen.append(("model", reference, kwargs))
        return FakeModel(1, 1)

    def tokenizer(cls, reference, **kwargs):
        seen.append(("tokenizer", reference, kwargs))
        return types.SimpleNamespace(padding_side="right", pad_token_id=0, eos_token="</s>")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(model))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", classmethod(tokenizer))
    return seen


def test_model_and_tokenizer_loads_pass_the_revision(monkeypatch, tmp_path):
    """The paper profile's base (a hub model) and a hub GGUF base being exported: both
    ``from_pretrained`` calls get ``base.revision``; the exported folder is read without one."""
    seen = _spy_transformers(monkeypatch)
    paper = load_params(PARAMS, {"profile": "paper"}).base
    _, tokenizer = load_base(paper, tmp_path / "base")
    assert tokenizer.padding_side == "left"
    assert [(kind, ref, kw["revision"]) for kind, ref, kw in seen] == [
        ("model", paper.model, paper.revision),
        ("tokenizer", paper.model, paper.revision),
    ]
    assert all(kw["trust_remote_code"] is False for _, _, kw in seen)
    seen.clear()
    gguf = dataclasses.replace(paper, model="org/model-GGUF", gguf_file="m.Q4_1.gguf", revision=SHA)
    with pytest.raises(_Stop):
        export_gguf_base(tmp_path / "export", gguf)
    assert [(kind, ref, kw["revision"], kw["gguf_file"]) for kind, ref, kw in seen] == [
        ("model", "org/model-GGUF", SHA, "m.Q4_1.gguf"),
        ("tokenizer", "org/model-GGUF", SHA, "m.Q4_1.gguf"),
    ]
    seen.clear()
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "config.json").write_text("{}", encoding="utf-8")
    load_base(gguf, tmp_path / "export")  # the exported copy: a folder, no revision
    assert [kw.get("revision") for _, _, kw in seen] == [None, None]
    assert {ref for _, ref, _ in seen} == {str(tmp_path / "export")}


@pytest.mark.slow  # runs the prepare stage
def test_manifest_hashes_the_bytes_read_and_changes_with_them(tmp_path):
    """Local sources: each read file's SHA-256 as it was read (before ``limit``), so editing
    a source file changes the manifest, and with it the prepared data DVC tracks."""
    sources = tmp_path / "sources"
    shutil.copytree(FIXTURES / "commonsenseqa", sources / "commonsenseqa")
    shutil.copytree(FIXTURES / "mmlu", sources / "mmlu")
    overrides = {
        "profile": "smol",
        "smol.data.train.path": str(sources / "commonsenseqa"),
        "smol.data.train.limit": 10,
        "smol.data.eval.cqa.path": str(sources / "commonsenseqa"),
        "smol.data.eval.mmlu_stem.path": str(sources / "mmlu"),
        "smol.data.eval.mmlu_ss.path": str(sources / "mmlu"),
    }
    params = load_params(PARAMS, overrides)
    layout = Layout(tmp_path / "run")
    manifest_file = prepare.run(params, layout)["manifest"]
    first = json.loads(manifest_file.read_text(encoding="utf-8"))
    train = first["tables"]["train"]
    train_file = sources / "commonsenseqa" / "train_rand_split.jsonl"
    assert train["rows"] == 10 and train["rows_read"] == 24
    assert train["spec"]["limit"] == 10 and train["spec"]["revision"] is None
    (read,) = train["reads"]
    assert read["path"] == str(train_file) and read["hub_id"] is None and read["rows"] == 24
    assert read["sha256"] == hashlib.sha256(train_file.read_bytes()).hexdigest()
    assert len(first["tables"]["mmlu_stem"]["reads"]) == 19
    lines = train_file.read_text(encoding="utf-8").splitlines(keepends=True)
    train_file.write_text("".join(lines[:-1]), encoding="utf-8")  # the last row, not used
    second = json.loads(prepare.run(params, layout)["manifest"].read_text(encoding="utf-8"))
    assert second["tables"]["train"]["reads"][0]["sha256"] != read["sha256"]
    assert second["tables"]["train"]["rows_read"] == 23
    assert second["tables"]["cqa"] == first["tables"]["cqa"]


@pytest.mark.slow  # runs the prepare stage
def test_tiny_manifest_and_nothing_written_when_a_source_fails(tmp_path):
    params = load_params(PARAMS, {"profile": "tiny"})
    layout = Layout(tmp_path)
    written = prepare.run(params, layout)
    manifest = json.loads(written["manifest"].read_text(encoding="utf-8"))
    assert list(manifest["tables"]) == ["train", "calibration", *params.data.eval]
    train = manifest["tables"]["train"]
    assert train["calibration_fraction"] == params.data.calibration_fraction
    assert train["rows"] + manifest["tables"]["calibration"]["rows"] == train["rows_read"]
    assert [read["source"] for read in train["reads"]] == ["synthetic"]
    before = {p: p.read_bytes() for p in layout.prepared.rglob("*") if p.is_file()}
    broken = load_params(
        PARAMS, {"tiny.data.eval.extra": {"source": "jsonl", "split": "x", "path": "nowhere"}}
    )
    with pytest.raises(Exception, match="nowhere: no such file"):
        prepare.run(broken, layout)
    after = {p: p.read_bytes() for p in layout.prepared.rglob("*") if p.is_file()}
    assert after == before
