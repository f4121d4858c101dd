"""2-process CPU (gloo) runs through torchrun: the distributed Sinkhorn and a few DDP training steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

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
    codes = sinkhorn_codes(img @ F.normalize(prototypes, dim=1).t())
    assert torch.allclose(result["codes"], codes, atol=1e-5)
    # Equal halves: the mean of the per-process losses (what DDP's gradient averaging optimises)
    # is the loss of the whole batch.
    assert abs(result["losses"].mean().item() - prototype_alignment_loss(img, txt, prototypes).item()) < 1e-5
    # Without the all-reduce each half would get other codes: the check can fail.
    half = sinkhorn_codes(img[:4] @ F.normalize(prototypes, dim=1).t())
    assert (half - codes[:4]).abs().max() > 1e-3
