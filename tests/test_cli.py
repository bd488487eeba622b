"""The argument toolkit: one str2bool, one parser; every entry point answers a bad flag with one error line."""
from __future__ import annotations

import importlib

import pytest

from ernie.utils import ArgumentParser, UserError, str2bool

ENTRY_POINTS = ["data_tools.trans_to_json", "data_tools.vocab", "data_tools.create_pretraining_data",
                "data_tools.merge", "data_tools.segmentation", "ernie.training.plot", "examples.demo",
                "ernie.training.trainer", "ernie.finetune.seq_cls", "ernie.finetune.ner", "ernie.finetune.qa",
                "ernie.deploy.export", "ernie.deploy.infer", "ernie.deploy.qa_infer", "ernie.selfcheck",
                "ernie.fill_mask"]


def test_str2bool_words():
    for v in ("1", "true", "T", "yes", "y", "on", True):
        assert str2bool(v) is True
    for v in ("0", "False", "f", "no", "n", "off", False):
        assert str2bool(v) is False
    with pytest.raises(Exception, match="expected true/false"):
        str2bool("maybe")


def test_parser_error_is_a_user_error():
    p = ArgumentParser(prog="x")
    p.add_argument("--n", type=int, required=True)
    with pytest.raises(UserError, match="--n"):
        p.parse_args([])
    with pytest.raises(UserError, match="invalid int value"):
        p.parse_args(["--n", "abc"])


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_every_entry_point_answers_an_unknown_flag_with_one_line(module, capsys):
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as e:
        main(["--no_such_flag_xyz", "1"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "usage:" not in err[0]
