"""The option helpers the ``ssl-mae`` subcommands share (:mod:`ssl_mae.cli.options`)."""

from __future__ import annotations

import argparse

import pytest

from ssl_mae.cli import options as opt


def test_add_unset_leaves_the_value_none_and_passes_its_settings_on() -> None:
    parser = opt.Parser(prog="test")
    group = parser.add_argument_group("group")
    opt.add_unset(group, "--epochs", "training epochs", type=opt.positive_int)
    opt.add_unset(parser, "--knn", "kNN", action=argparse.BooleanOptionalAction)

    assert vars(parser.parse_args([])) == {"epochs": None, "knn": None}
    assert vars(parser.parse_args(["--epochs", "3", "--no-knn"])) == {"epochs": 3, "knn": False}
    assert "training epochs" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--epochs", "0"])


def test_pool_and_eval_batch_size_take_another_default() -> None:
    shared, unset = opt.Parser(prog="shared"), opt.Parser(prog="unset")
    opt.add_pool(shared)
    opt.add_eval_batch_size(shared)
    opt.add_pool(unset, default=None)
    opt.add_eval_batch_size(unset, default=None)

    assert vars(shared.parse_args([])) == {"pool": "mean", "eval_batch_size": 256}
    assert vars(unset.parse_args([])) == {"pool": None, "eval_batch_size": None}
    assert vars(unset.parse_args(["--pool", "cls", "--eval-batch-size", "8"])) == {
        "pool": "cls",
        "eval_batch_size": 8,
    }
