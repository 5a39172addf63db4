"""Joint training killed with SIGKILL resumes and ends bitwise identical, on CPU, to an
uninterrupted joint run: killed mid-epoch 2, and killed mid-save of epoch 2 after the first
member's folder was renamed into place but before the second's (the members then stand at
different epochs, and the rerun replays epoch 2 in the same joint passes). The same again
when training by steps (``tinyworld.KILL_SCHEDULES``).

Real child processes, no mocks of training; the child pauses at a known point (a marker
file) and the parent SIGKILLs it, as in ``test_kill_resume.py``. LoRA dropout is on, so a
resume that did not restore each member's own RNG would differ.
"""

from __future__ import annotations

import dataclasses
import textwrap

import pytest
import tinyworld as tw
import torch

from lorauq.checkpoints import STATE_FILE, completed_epochs

pytestmark = pytest.mark.slow  # two child processes and three short joint trainings (~25 s)

MEMBERS = [0, 1, 2]

_CHILD = textwrap.dedent(
    """
    import dataclasses, sys, time
    from pathlib import Path

    import torch

    torch.set_num_threads(1)
    import lorauq.joint
    import tinyworld as tw

    base_dir, root, marker, point, mode = sys.argv[1:6]
    root, marker = Path(root), Path(marker)

    def pause():
        marker.write_text("ready")
        time.sleep(600)  # the parent SIGKILLs us here

    if point == "mid-epoch":
        # After 2 joint steps of epoch 2: weights, moments and dropout RNGs moved past epoch 1.
        real_forward = lorauq.joint.last_position_logits
        calls = {"n": 0}

        def forward(*args, **kwargs):
            if (root / "member-0" / "epoch-1").is_dir():
                calls["n"] += 1
                if calls["n"] == 3:
                    pause()
            return real_forward(*args, **kwargs)

        lorauq.joint.last_position_logits = forward
    elif point == "mid-save":
        # The second member's epoch-2 training state: member 0's epoch 2 is complete.
        real_save = torch.save
        saves = {"n": 0}

        def save(obj, path, *args, **kwargs):
            if isinstance(obj, dict) and obj.get("epoch") == 2:
                saves["n"] += 1
                if saves["n"] == 2:
                    pause()
            return real_save(obj, path, *args, **kwargs)

        torch.save = save
    lora = dataclasses.replace(tw.LORA, dropout=0.1)
    tw.train_joint(Path(base_dir), root, members=[0, 1, 2], lora=lora, **tw.KILL_SCHEDULES[mode])
    print("finished without being killed", file=sys.stderr)
    sys.exit(3)
    """
)


@pytest.mark.parametrize("mode", list(tw.KILL_SCHEDULES))
def test_sigkill_mid_epoch_and_mid_save_then_resume_is_bitwise_identical(tiny_base, tmp_path, mode):
    lora = dataclasses.replace(tw.LORA, dropout=0.1)
    schedule = tw.KILL_SCHEDULES[mode]
    base_dir = tiny_base
    reference = tmp_path / "reference"
    reference_logs = tw.train_joint(base_dir, reference, members=MEMBERS, lora=lora, **schedule)

    root = tmp_path / "killed"
    marker = tmp_path / "mid-epoch.marker"
    tw.sigkill_at_marker(
        _CHILD, [str(base_dir), str(root), str(marker), "mid-epoch", mode], marker, tmp_path
    )
    assert [completed_epochs(root / f"member-{m}") for m in MEMBERS] == [[1], [1], [1]]

    marker = tmp_path / "mid-save.marker"
    tw.sigkill_at_marker(
        _CHILD, [str(base_dir), str(root), str(marker), "mid-save", mode], marker, tmp_path
    )
    # member 0 has epoch 2, member 1's is a hidden temporary without state, member 2 has none
    assert [completed_epochs(root / f"member-{m}") for m in MEMBERS] == [[1, 2], [1], [1]]
    temps = [p for p in (root / "member-1").iterdir() if p.name.startswith(".")]
    assert len(temps) == 1 and not (temps[0] / STATE_FILE).exists()

    resumed_logs = tw.train_joint(base_dir, root, members=MEMBERS, lora=lora, **schedule)
    assert list(resumed_logs) == list(reference_logs) == MEMBERS
    for member in MEMBERS:
        resumed, uninterrupted = resumed_logs[member], reference_logs[member]
        assert sorted(p.name for p in (root / f"member-{member}").iterdir()) == [
            "epoch-1",
            "epoch-2",
        ]
        assert [log["loss"] for log in resumed] == [log["loss"] for log in uninterrupted]
        for epoch in (1, 2):
            a = tw.adapter_tensors(reference / f"member-{member}" / f"epoch-{epoch}")
            b = tw.adapter_tensors(root / f"member-{member}" / f"epoch-{epoch}")
            assert a.keys() == b.keys()
            for key in a:
                assert torch.equal(a[key], b[key]), (member, epoch, key)
        a_state = torch.load(
            reference / f"member-{member}" / "epoch-2" / STATE_FILE, weights_only=True
        )
        b_state = torch.load(root / f"member-{member}" / "epoch-2" / STATE_FILE, weights_only=True)
        assert torch.equal(a_state["torch_rng"], b_state["torch_rng"])
        for moments, again in zip(
            a_state["optimizer"]["state"].values(),
            b_state["optimizer"]["state"].values(),
            strict=True,
        ):
            for name in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(moments[name], again[name]), name
