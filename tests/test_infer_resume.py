"""Inference killed with SIGKILL (a real child process) leaves nothing that looks complete, and
its rerun evaluates only the (member, epoch) pairs it had not finished — ending with exactly
the table an uninterrupted run writes."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import tinyworld as tw

import lorauq.infer
import lorauq.readout
from lorauq.infer import evaluate_member, parts_dir
from lorauq.model import load_base_model, load_tokenizer

pytestmark = pytest.mark.slow  # one child process and four short inferences (~15 s)

EVAL_DOMAINS = ("in_domain", "unseen")

_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    import torch

    torch.set_num_threads(1)
    import lorauq.infer
    import lorauq.readout
    import tinyworld as tw
    from lorauq.model import load_base_model, load_tokenizer

    base_dir, member_dir, out_path, marker = (Path(a) for a in sys.argv[1:5])
    real = lorauq.readout.evaluate_sets

    def evaluate_all(*args, epoch, **kwargs):
        if epoch == 2:  # epoch 1 is finished and stored; stop before epoch 2 is
            marker.write_text("ready")
            time.sleep(600)  # the parent SIGKILLs us here
        return real(*args, epoch=epoch, **kwargs)

    lorauq.infer.evaluate_sets = evaluate_all
    lorauq.infer.evaluate_member(
        load_base_model(str(base_dir), tw.BASE),
        load_tokenizer(str(base_dir), tw.BASE),
        {d: tw.eval_set(d) for d in ("in_domain", "unseen")},
        member_dir,
        out_path,
        member=0,
        infer=tw.INFER,
        progress=False,
    )
    sys.exit(3)
    """
)


@pytest.fixture(scope="module")
def trained(tiny_base, tmp_path_factory):
    member_dir = tmp_path_factory.mktemp("infer-resume") / "member-0"
    tw.train(tiny_base, member_dir, epochs=3)
    return tiny_base, member_dir


def evaluate(base_dir: Path, member_dir: Path, out: Path, monkeypatch, infer=tw.INFER):
    """An in-process run that records which epochs it actually evaluated."""
    seen: list[int] = []
    real = lorauq.readout.evaluate_sets

    def spy(*args, epoch, **kwargs):
        seen.append(epoch)
        return real(*args, epoch=epoch, **kwargs)

    monkeypatch.setattr(lorauq.infer, "evaluate_sets", spy)
    evaluate_member(
        load_base_model(str(base_dir), tw.BASE),
        load_tokenizer(str(base_dir), tw.BASE),
        {d: tw.eval_set(d) for d in EVAL_DOMAINS},
        member_dir,
        out,
        member=0,
        infer=infer,
        progress=False,
    )
    monkeypatch.undo()
    return seen


def test_killed_inference_resumes_only_unfinished_epochs(trained, tmp_path, monkeypatch):
    base_dir, member_dir = trained
    reference = tmp_path / "reference" / "member-0.parquet"
    assert evaluate(base_dir, member_dir, reference, monkeypatch) == [1, 2, 3]
    assert not parts_dir(reference).exists()  # parts are removed once the table is written

    out = tmp_path / "logits" / "member-0.parquet"
    marker = tmp_path / "mid-inference.marker"
    tw.sigkill_at_marker(
        _CHILD, [str(base_dir), str(member_dir), str(out), str(marker)], marker, tmp_path
    )
    # Nothing looks complete: no member table, only epoch 1's part in the hidden folder.
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir()] == [parts_dir(out).name]
    finished = sorted(p.name for p in parts_dir(out).iterdir())
    assert len(finished) == 1 and finished[0].startswith("member-0-epoch-1-")

    assert evaluate(base_dir, member_dir, out, monkeypatch) == [2, 3]
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(reference))
    assert out.read_bytes() == reference.read_bytes()
    assert not parts_dir(out).exists()


def test_changed_settings_never_reuse_a_part(trained, tmp_path, monkeypatch):
    base_dir, member_dir = trained
    out = tmp_path / "member-0.parquet"
    marker = tmp_path / "mid-inference.marker"
    tw.sigkill_at_marker(
        _CHILD, [str(base_dir), str(member_dir), str(out), str(marker)], marker, tmp_path
    )
    # Another max_length: epoch 1's part was made under other settings, so all epochs rerun.
    other = dataclasses.replace(tw.INFER, max_length=tw.INFER.max_length + 1)
    assert evaluate(base_dir, member_dir, out, monkeypatch, infer=other) == [1, 2, 3]
    assert not parts_dir(out).exists()
