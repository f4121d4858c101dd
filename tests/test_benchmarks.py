"""Every benchmark (``benchmarks/bench_*.py``, found by glob) runs end to end in its ``--smoke`` form.

The benchmarks are run by hand (``make perf``), so an API change could break one unnoticed (it did:
``bench_detection.py`` still read mean and std from the detection protocol after they moved to the
backbone). Here each runs as ``make perf`` runs it, as a script, with tiny arguments (``benchmarks/smoke.py``);
its bars are not enforced at that size. A new benchmark is tested the moment it is added, and one
without a ``--smoke`` form fails here.
"""

from __future__ import annotations

import runpy
import sys
import tempfile
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("bench_*.py"))


def test_the_benchmarks_are_found() -> None:
    assert len(BENCHMARKS) >= 7


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda path: path.stem)
def test_every_benchmark_runs_in_its_smoke_form(script: Path, scratch_folder, monkeypatch: pytest.MonkeyPatch) -> None:
    # In this process (the libraries are imported once for all of them), as `python benchmarks/bench_x.py --smoke`:
    # the script's folder first on the path, its temporary folders in a scratch folder (in memory where there is
    # room: bench_detection's smoke run writes a gigabyte of detection checkpoints).
    monkeypatch.syspath_prepend(str(script.parent))
    monkeypatch.setattr(sys, "argv", [str(script), "--smoke"])
    scratch = scratch_folder(2 * 2**30)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    # torch's compile cache goes under the temporary folder, and torch then pins that path in this environment: here
    # in the scratch folder too, unset again afterwards (later tests and their processes do not inherit it)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(scratch / "torchinductor"))
    with pytest.raises(SystemExit) as finished:
        runpy.run_path(str(script), run_name="__main__")
    assert finished.value.code in (0, None), f"{script.name} --smoke exited with {finished.value.code!r}"
