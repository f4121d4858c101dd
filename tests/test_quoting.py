"""Messages shorten what they quote (issue 19: a 1 KB pickle's key exhausted memory in the "no state dict" message)."""

from __future__ import annotations

import pytest
import torch

from benchmark.backbones.checkpoint import CheckpointError, read_checkpoint
from benchmark.quoting import quote, quote_some


def test_quote_cuts_plain_values_and_names_anything_else_by_type():
    assert quote("abc") == "'abc'" and quote(3) == "3" and quote(None) == "None" and quote(1.5) == "1.5"
    assert quote("x" * 1000, limit=5) == "'xxxxx'... (1000 characters)"
    assert quote(2**100_000) == "<int of 100001 bits>"
    assert quote(("a", ("b",))) == "<tuple>" and quote(object()) == "<object>"
    assert quote_some(["b", "a", "c"], count=2) == "['a', 'b', ... (+1)]"


def test_a_key_whose_str_is_huge_does_not_reach_the_no_state_dict_message(tmp_path):
    nested = ("aaaaaaaa",)
    for _ in range(16):  # str() of this key is 1.7 MB; 40 levels (still a small pickle) would be terabytes
        nested = (nested, nested)
    torch.save({nested: 1, "k" * 1_000_000: 2}, tmp_path / "keys.pth")
    with pytest.raises(CheckpointError, match="no state dict found") as error:
        read_checkpoint(tmp_path / "keys.pth")
    message = str(error.value)
    assert len(message) < 500 and "<tuple>" in message and "(1000000 characters)" in message
