"""The argument toolkit (one str2bool, one parser) and the entry-point registry (ernie/cli.py): scripts/*.py and
[project.scripts] are what the registry generates; every entry point answers --help through its script and its
console-script function, and a bad flag with one error line."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from ernie import cli
from ernie.utils import ArgumentParser, UserError, str2bool

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = cli.ENTRY_POINTS
SCRIPTS = [ep for ep in ENTRY_POINTS if ep.script]
# Console-script names users already type (README, docs, test_wheel_install): they must not change.
EXISTING_CONSOLE_SCRIPTS = [
    "ernie-trans-to-json",
    "ernie-build-vocab",
    "ernie-words-segmentation",
    "ernie-create-pretraining-data",
    "ernie-run-pretrain",
    "ernie-run-seq-cls",
    "ernie-run-ner",
    "ernie-export-model",
    "ernie-seq-cls-infer",
    "ernie-setup-envs",
    "ernie-gpu-selfcheck",
    "ernie-fill-mask",
]
# Parsers that are not ernie.utils.ArgumentParser (a bad flag would print argparse's usage); strict xfail.
OWN_PARSER: dict[str, str] = {}  # entry points still building their own argparse parser (none)
# An entry point that is not in the registry (not a command of the library) but parses the same way.
OTHER_MAINS = ["examples.demo:main"]


def ids(ep):
    return ep.name


@pytest.fixture
def restore_environ():
    """run_pretrain's set-up and cli_main's CPU settings write os.environ: give the next test the one it had."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


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


def test_scripts_and_console_scripts_are_what_the_registry_generates():
    assert cli.check(str(ROOT)) == []
    with open(ROOT / "pyproject.toml", "rb") as f:
        declared = tomllib.load(f)["project"]["scripts"]
    assert declared == {ep.console: f"ernie.cli:{ep.name}" for ep in ENTRY_POINTS}
    on_disk = {p.name for p in (ROOT / "scripts").glob("*.py")} - set(cli.NOT_ENTRY_POINTS)
    assert on_disk == {Path(ep.script_path).name for ep in SCRIPTS}


def test_the_check_finds_drift(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert set(cli.write(str(tmp_path))) == {ep.script_path for ep in SCRIPTS}
    assert cli.check(str(tmp_path)) == [] and cli.write(str(tmp_path)) == []
    edited = tmp_path / SCRIPTS[0].script_path
    edited.write_text(edited.read_text() + "# hand edit\n")
    (tmp_path / SCRIPTS[1].script_path).unlink()
    (tmp_path / "scripts" / "stray.py").write_text("")
    text = (tmp_path / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(text.replace(f"{ENTRY_POINTS[2].console} = ", "ernie-renamed = "))
    problems = "\n".join(cli.check(str(tmp_path)))
    for part in (
        f"{SCRIPTS[0].script_path}: differs",
        f"{SCRIPTS[1].script_path}: missing",
        "scripts/stray.py",
        f"{ENTRY_POINTS[2].console}: None",
        "ernie-renamed",
    ):
        assert part in problems, problems
    cli.write(str(tmp_path))
    assert [line.split(":")[0] for line in cli.check(str(tmp_path))] == ["scripts/stray.py"]
    assert (tmp_path / "pyproject.toml").read_text() == text  # the rest of pyproject.toml is kept as it was


def test_registry_names():
    consoles = [ep.console for ep in ENTRY_POINTS]
    assert len(set(consoles)) == len(consoles) and len({ep.name for ep in ENTRY_POINTS}) == len(ENTRY_POINTS)
    assert set(EXISTING_CONSOLE_SCRIPTS) <= set(consoles)
    assert not set(cli.NOT_ENTRY_POINTS) & {Path(ep.script_path).name for ep in ENTRY_POINTS}


@pytest.mark.parametrize("ep", ENTRY_POINTS, ids=ids)
def test_help_through_the_console_script(ep, monkeypatch, capsys, restore_environ):
    monkeypatch.setattr(sys, "argv", [ep.console, "--help"])
    with pytest.raises(SystemExit) as e:
        getattr(cli, ep.name)()
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ")


@pytest.mark.parametrize("ep", SCRIPTS, ids=ids)
def test_help_through_the_script(ep, monkeypatch, capsys, restore_environ):
    path = str(ROOT / ep.script_path)
    monkeypatch.setattr(sys, "argv", [path, "--help"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(path, run_name="__main__")
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ")


def test_run_pretrain_script_sets_threads_before_paddle(tmp_path):
    """As the launcher runs it (a fresh interpreter, the script by path), its set-up runs before Paddle loads; the
    probe stops the process there (--help through the script: test_help_through_the_script)."""
    probe = tmp_path / "sitecustomize.py"
    probe.write_text(
        "import os, sys, ernie.training.distributed as d\n"
        "real = d.configure_threads\n"
        "def configure_threads():\n"
        "    real()\n"
        "    print('PADDLE_LOADED', 'paddle' in sys.modules, os.environ.get('OMP_NUM_THREADS'),\n"
        "          flush=True)\n"
        "    os._exit(0)\n"
        "d.configure_threads = configure_threads\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run_pretrain.py"), "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[:2] == ["PADDLE_LOADED", "False"] and out.stdout.split()[2].isdigit(), out.stdout


def test_importing_the_registry_imports_no_main():
    code = (
        "import sys, ernie.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('paddle', 'numpy', 'data_tools') "
        "or m in {t.target.split(':')[0] for t in ernie.cli.ENTRY_POINTS}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize(
    "status,returns_status,expected", [(None, False, 0), ({"acc": 1.0}, False, 0), (1, True, 1), (0, True, 0)]
)
def test_exit_status(status, returns_status, expected, monkeypatch):
    ep = cli.EntryPoint("fake", "fake_mod:main", "", returns_status=returns_status)
    monkeypatch.setitem(cli.BY_NAME, "fake", ep)
    monkeypatch.setattr(cli, "resolve", lambda target: lambda argv=None: status)
    assert cli.run("fake") == expected


@pytest.mark.parametrize("target", [ep.target for ep in ENTRY_POINTS] + OTHER_MAINS)
def test_every_entry_point_answers_an_unknown_flag_with_one_line(target, capsys, request):
    name = next((ep.name for ep in ENTRY_POINTS if ep.target == target), None)
    if name in OWN_PARSER:
        request.applymarker(pytest.mark.xfail(reason=OWN_PARSER[name], strict=True))
    with pytest.raises(SystemExit) as e:
        cli.resolve(target)(["--no_such_flag_xyz", "1"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "usage:" not in err[0]


@pytest.mark.parametrize("ep", ENTRY_POINTS, ids=ids)
def test_every_parser_refuses_abbreviations(ep, monkeypatch, capsys, restore_environ):
    """allow_abbrev=False on every parser an entry point builds (issue #33: ``--fp16`` read as ``--fp16_opt_level``):
    the parsers are recorded while ``--help`` runs, and ``--hel`` (a prefix of --help) is an unknown flag."""
    import argparse

    seen: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_known_args

    def record(self, *args, **kwargs):
        seen.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", record)
    with pytest.raises(SystemExit) as e:
        cli.resolve(ep.target)(["--help"])
    assert e.value.code == 0 and seen
    assert [p.prog for p in seen if p.allow_abbrev] == []
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.resolve(ep.target)(["--hel"])
    assert e.value.code == 2
    assert "usage:" not in capsys.readouterr().out
