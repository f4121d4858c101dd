"""Argument types shared by the verbs: comma lists, integers and per-task choices."""

import argparse

import pytest

from benchmark.cli import build_parser
from benchmark.commands.arguments import comma_integers, comma_list, task_choices


def test_comma_list_strips_items_and_drops_empty_ones():
    assert comma_list(" rsna, chexpert ,,covidx,") == ("rsna", "chexpert", "covidx")


def test_comma_integers_parses_and_names_the_bad_text():
    assert comma_integers("1,10, 100") == (1, 10, 100)
    with pytest.raises(argparse.ArgumentTypeError, match="expected comma-separated integers, got '1,ten'"):
        comma_integers("1,ten")


def test_task_choices_maps_bare_values_to_every_task():
    assert task_choices("paper") == {None: "paper"}
    assert task_choices("detection=paper,classification=cached") == {"detection": "paper", "classification": "cached"}
    for bad in ("detection=", "=paper"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected VALUE or TASK=VALUE"):
            task_choices(bad)


def test_verbs_share_the_argument_types():
    parser = build_parser()
    compare = parser.parse_args(["compare", "a", "b", "--fractions", "1,10", "--datasets", "rsna,covidx"])
    assert compare.fractions == (1, 10) and compare.datasets == ("rsna", "covidx")
    run = parser.parse_args(["run", "--backbone", "x", "--mode", "classification=cached"])
    assert run.mode == {"classification": "cached"}
