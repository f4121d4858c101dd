"""The prepared-dataset contract: reading manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.data.prepared import DataError, Manifest, PreparedDataset


@pytest.mark.parametrize(
    "content",
    ["{not json", '{"dataset": "toy"}', '{"dataset": "toy", "source_files": [{"path": "a"}]}', "[]"],
)
def test_unreadable_manifest_is_a_data_error_naming_the_file(tmp_path: Path, content: str) -> None:
    # Regression: a corrupt manifest or one from another version escaped as JSONDecodeError/TypeError.
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(DataError, match=r"manifest.json: not a manifest this version can read .*benchmark prepare"):
        Manifest.read(tmp_path)
    with pytest.raises(DataError, match="manifest.json"):
        PreparedDataset(tmp_path)
