"""Provenance: commit and dirty flag of a checkout, package versions, hardware, times."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime

import pytest

import benchmark
from benchmark.provenance import code_version, collect_provenance, hardware, package_versions, utc_now

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(folder, *args):
    subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True)


@needs_git
def test_commit_and_dirty_flag_of_a_checkout(tmp_path):
    (tmp_path / "module.py").write_text("x = 1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "module.py")
    git(tmp_path, "commit", "-q", "-m", "first")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    clean = code_version(tmp_path)
    assert clean["commit"] == head and clean["dirty"] is False
    assert clean["package_version"] == benchmark.__version__
    (tmp_path / "module.py").write_text("x = 2\n")
    assert code_version(tmp_path)["dirty"] is True


def test_outside_a_checkout_the_commit_is_unknown(tmp_path):
    version = code_version(tmp_path)
    assert version["commit"] is None and version["dirty"] is None


def test_package_versions_name_installed_and_missing_distributions():
    versions = package_versions(("torch", "surely-not-an-installed-distribution"))
    assert versions["torch"] and versions["surely-not-an-installed-distribution"] is None


def test_collect_provenance_has_code_packages_hardware_and_times():
    started = utc_now()
    record = collect_provenance(started)
    assert set(record) == {"code", "python", "packages", "hardware", "started", "finished"}
    assert record["started"] == started
    assert datetime.fromisoformat(record["finished"]) >= datetime.fromisoformat(started)
    assert record["packages"]["numpy"]
    machine = hardware()
    assert machine["cpu_count"] >= 1 and isinstance(machine["gpus"], list)
