"""Fine-tuning killed with SIGKILL (real child processes, no mocks of training) resumes from
its last complete epoch and ends bitwise identical, on CPU, to an uninterrupted run.

The child trains the tiny world's member with ``lorauq.train.train_member``. To kill it at a
known point rather than by a racy timer, it wraps one function with a "pause here" that writes
a marker file and sleeps; the parent waits for the marker and sends SIGKILL, so nothing in the
child (no ``finally``, no atexit) runs. Two points are tested in turn on one member folder:
mid-epoch 2 (after a few optimizer steps) and mid-save of epoch 2 (adapter written into the
temporary folder, training state not yet). The same again when training by steps
(``tinyworld.KILL_SCHEDULES``): checkpoint 1 mid-epoch 1, the kill in the steps up to
checkpoint 2, which run on into epoch 2's batch order.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import tinyworld as tw
import torch

from lorauq.checkpoints import STATE_FILE, completed_epochs

pytestmark = pytest.mark.slow  # per schedule: two child processes, three short trainings (~20 s)

_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    import torch

    torch.set_num_threads(1)
    import lorauq.train
    import tinyworld as tw

    base_dir, member_dir, marker, point, mode = sys.argv[1:6]
    marker = Path(marker)
    schedule = tw.KILL_SCHEDULES[mode]

    def pause():
        marker.write_text("ready")
        time.sleep(600)  # the parent SIGKILLs us here

    if point == "mid-epoch":
        # After 2 optimizer steps of epoch 2: the model and Adam moments have moved past
        # epoch-1's checkpoint, so a resume that did not restore them would differ.
        real_forward = lorauq.train.last_position_logits
        calls = {"n": 0}

        def forward(*args, **kwargs):
            if (Path(member_dir) / "epoch-1").is_dir():
                calls["n"] += 1
                if calls["n"] == 3:
                    pause()
            return real_forward(*args, **kwargs)

        lorauq.train.last_position_logits = forward
    elif point == "mid-save":
        # torch.save writes the training state after peft wrote the adapter files.
        real_save = torch.save

        def save(obj, path, *args, **kwargs):
            if isinstance(obj, dict) and obj.get("epoch") == 2:
                pause()
            return real_save(obj, path, *args, **kwargs)

        torch.save = save
    tw.train(Path(base_dir), Path(member_dir), **schedule)
    print("finished without being killed", file=sys.stderr)
    sys.exit(3)
    """
)


def run_and_kill(base_dir: Path, member_dir: Path, point: str, mode: str, tmp: Path) -> None:
    """Start a training child, wait for it to reach ``point``, SIGKILL it."""
    marker = tmp / f"{point}.marker"
    args = [str(base_dir), str(member_dir), str(marker), point, mode]
    tw.sigkill_at_marker(_CHILD, args, marker, tmp)


@pytest.mark.parametrize("mode", list(tw.KILL_SCHEDULES))
def test_sigkill_mid_epoch_and_mid_save_then_resume_is_bitwise_identical(tiny_base, tmp_path, mode):
    base_dir = tiny_base
    schedule = tw.KILL_SCHEDULES[mode]
    reference_dir = tmp_path / "reference"
    reference_logs = tw.train(base_dir, reference_dir, **schedule)

    member_dir = tmp_path / "killed"
    run_and_kill(base_dir, member_dir, "mid-epoch", mode, tmp_path)
    # epoch 1 is complete; epoch 2 was never started on disk
    assert completed_epochs(member_dir) == [1]
    assert sorted(p.name for p in member_dir.iterdir()) == ["epoch-1"]

    run_and_kill(base_dir, member_dir, "mid-save", mode, tmp_path)
    # the half-saved epoch 2 is a hidden temporary holding the adapter but no state:
    # nothing that looks like a finished epoch
    temps = [p for p in member_dir.iterdir() if p.name.startswith(".")]
    assert len(temps) == 1 and temps[0].name.startswith(".epoch-2.")
    assert (temps[0] / "adapter_model.safetensors").is_file()
    assert not (temps[0] / STATE_FILE).exists()
    assert completed_epochs(member_dir) == [1]
    for folder in member_dir.iterdir():
        if not folder.name.startswith("."):
            assert (folder / "adapter_model.safetensors").is_file()
            assert (folder / STATE_FILE).is_file()

    resumed_logs = tw.train(base_dir, member_dir, **schedule)
    assert sorted(p.name for p in member_dir.iterdir()) == ["epoch-1", "epoch-2"]  # temp cleaned
    assert [log["loss"] for log in resumed_logs] == [log["loss"] for log in reference_logs]
    for epoch in (1, 2):
        reference = tw.adapter_tensors(reference_dir / f"epoch-{epoch}")
        resumed = tw.adapter_tensors(member_dir / f"epoch-{epoch}")
        assert reference.keys() == resumed.keys()
        for key in reference:
            assert torch.equal(reference[key], resumed[key]), (epoch, key)
    reference_state = torch.load(reference_dir / "epoch-2" / STATE_FILE, weights_only=True)
    resumed_state = torch.load(member_dir / "epoch-2" / STATE_FILE, weights_only=True)
    for moments, again in zip(
        reference_state["optimizer"]["state"].values(),
        resumed_state["optimizer"]["state"].values(),
        strict=True,
    ):
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(moments[name], again[name]), name
