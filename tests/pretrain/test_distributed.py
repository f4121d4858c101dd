"""2-process CPU (gloo) runs through torchrun: the distributed Sinkhorn and a few DDP training steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from pretrain.checkpoints import load_checkpoint
from pretrain.losses import prototype_alignment_loss, sinkhorn_codes

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def torchrun(args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ARGS`` with this checkout first on the path."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                        "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_distributed_sinkhorn_equals_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    sys.path.insert(0, str(HERE))
    try:
        from sinkhorn_worker import global_batch
    finally:
        sys.path.remove(str(HERE))
    torchrun([str(HERE / "sinkhorn_worker.py"), str(tmp_path / "out.pt")], cwd=tmp_path)
    result = torch.load(tmp_path / "out.pt")

    img, txt, prototypes = global_batch()
    codes = sinkhorn_codes(img @ prototypes.t())
    assert torch.allclose(result["codes"], codes, atol=1e-5)
    # Equal halves: the mean of the per-process losses (what DDP's gradient averaging optimises)
    # is the loss of the whole batch.
    assert abs(result["losses"].mean().item() - prototype_alignment_loss(img, txt, prototypes).item()) < 1e-5
    # Without the all-reduce each half would get other codes: the check can fail.
    half = sinkhorn_codes(img[:4] @ prototypes.t())
    assert (half - codes[:4]).abs().max() > 1e-3


def test_two_processes_train_a_few_steps_with_ddp(demo_mimic: Path, tiny_overrides: tuple[str, ...], tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = torchrun(["-m", "pretrain", "--config", "demo", f"data={demo_mimic}", f"out={run}", "export=",
                       *tiny_overrides, "batch_size=8"], cwd=tmp_path)
    checkpoint = load_checkpoint(run / "last.ckpt")
    assert checkpoint["hyper_parameters"]["world_size"] == 2
    # 38 training pairs: 19 per process, two batches of 8 each, for 2 epochs.
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (2, 4)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"start"' not in line]
    assert [r["epoch"] for r in records] == [1, 2]  # one log line per epoch: only rank 0 writes
    assert result.stderr.count("epoch 2: loss train/val") == 1
