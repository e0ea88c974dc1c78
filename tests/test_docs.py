"""The documentation and the command line agree: every command has the
options docs/cli.md lists for it, each with its help text and the default
the page gives; --help says where the docs are, installed or not; errors
name their command; and what docs/cli.md promises of --version and of
several devices holds."""
import argparse
import os
import re

import pytest

import rpn
from rpn.cli import build_parser, main
from rpn.docs import DOC_FILES, docs_folder, epilog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ("train", "evaluate", "predict", "propose", "export", "env")


def documented_options(text, command):
    """The options (and positional names) in the first column of the first
    table of ``## `rpn COMMAND``` in docs/cli.md, with each one's default
    column: ``{option: default cell}`` (an option "as above" with the
    default of the shared options' table)."""
    heading = "Options shared by several commands" if command is None else f"`rpn {command}`"
    section = re.search(rf"^## {heading}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, command
    rows = [line for line in section.group(1).splitlines() if line.startswith("|")]
    found = {}
    for row in rows[2:]:                            # after the header and its rule
        first, default = re.split(r"(?<!\\)\|", row)[1:3]
        names = re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-z])\b", first)
        names += re.findall(r"`([A-Z]+) \.\.\.`", first)          # positional
        assert names, row
        found.update({name: default.strip() for name in names})
    if not rows:
        pytest.fail(f"no table under rpn {command}")
    if command is not None:
        shared = documented_options(text, None)
        found = {name: default or shared.get(name, "") for name, default in found.items()}
    return found


def parser_options(command):
    """``{option: action}`` of ``rpn COMMAND`` (positionals by metavar)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = {}
    for action in sub.choices[command]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        for name in action.option_strings or [action.metavar]:
            options[name] = action
    return options


@pytest.fixture(scope="module")
def cli_md():
    with open(os.path.join(ROOT, "docs", "cli.md"), encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_the_options_docs_cli_md_lists(cli_md, command):
    documented, options = documented_options(cli_md, command), parser_options(command)
    assert sorted(options) == sorted(documented)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_the_documented_default(cli_md, command):
    documented = documented_options(cli_md, command)
    for name, action in parser_options(command).items():
        assert action.help and action.help != argparse.SUPPRESS, (command, name)
        if isinstance(action.default, (str, int)) and not isinstance(action.default, bool) \
                and name != "--workers":                # half the cores: a rule, not a number
            assert f"`{action.default}`" in documented[name], (command, name)
            assert str(action.default) in action.help, (command, name)


def documented_row(text, command, option):
    """The whole row of ``option`` in the table of ``## `rpn COMMAND```."""
    section = re.search(rf"^## `rpn {command}`\n(.*?)(?=^## |\Z)", text, re.M | re.S).group(1)
    rows = [line for line in section.splitlines()
            if line.startswith("|") and re.search(rf"`{option}[ `]", line.split("|")[1])]
    assert len(rows) == 1, (command, option)
    return rows[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_choice_of_an_option_is_named_in_its_help_and_on_the_page(cli_md, command):
    # a choice added to the parser and left out of the words (as four presets once were)
    for name, action in parser_options(command).items():
        if not action.choices:
            continue
        row = documented_row(cli_md, command, name)
        for choice in action.choices:
            assert re.search(rf"(?<![\w-]){re.escape(choice)}(?![\w-])", action.help), \
                (command, name, choice)
            assert f"`{choice}`" in row, (command, name, choice)


def test_the_help_says_what_the_page_says_where_they_once_differed(cli_md):
    export = parser_options("export")["--checkpoint"].help
    assert "export folder is refused" in export
    for command in ("evaluate", "propose"):
        assert "the classes the model was trained on" in parser_options(command)["--classes"].help
    ctx = parser_options("evaluate")["--ctx"].help
    assert "gpu:N" in ctx and "0,1" not in ctx
    assert "0,1" in parser_options("train")["--ctx"].help


def test_help_ends_with_where_the_docs_are(capsys):
    for argv in (["--help"], ["train", "--help"], ["env", "--help"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        assert out.endswith(" ".join(epilog().split()))
    folder = docs_folder()
    assert folder == os.path.join(ROOT, "docs")
    assert os.path.join(folder, "cli.md") in epilog()


def test_the_docs_are_found_where_a_wheel_installs_them(tmp_path):
    installed = tmp_path / "share" / "doc" / "rpn"
    installed.mkdir(parents=True)
    for name in DOC_FILES:
        (installed / name).write_text("# page\n")
    assert docs_folder([str(tmp_path)], source=False) == str(installed)
    assert docs_folder([str(tmp_path / "elsewhere")], source=False) is None
    # and the wheel carries them there
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        shipped = tomllib.load(f)["tool"]["setuptools"]["data-files"]["share/doc/rpn"]
    assert sorted(shipped) == sorted(["README.md"] + [f"docs/{n}" for n in DOC_FILES])


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"rpn {rpn.__version__}"


@pytest.mark.parametrize("argv, line", [
    (["train", "--data", "synthetic"],
     "rpn train: error: the following arguments are required: --out"),
    (["evaluate"], "rpn evaluate: error: the following arguments are required: --checkpoint"),
    (["propose", "--checkpoint", "x", "--out", "y.npz"],
     "rpn propose: error: the following arguments are required: --data"),
    (["train", "--data", "synthetic", "--out", "x", "--epochs", "0"],
     "rpn train: error: argument --epochs: must be at least 1, got 0"),
    (["env", "--preset", "nope"], "rpn env: error: argument --preset: invalid choice"),
    ([], "rpn: error: the following arguments are required: COMMAND"),
])
def test_a_bad_argument_is_one_line_naming_its_command(capsys, argv, line):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(line), err


@pytest.mark.parametrize("command", ["evaluate", "predict", "propose", "export"])
def test_several_devices_are_refused_where_one_is_used(tiny_run, tmp_path, capsys, command):
    argv = [command, "--checkpoint", tiny_run, "--ctx", "cpu:0,1", "--out",
            str(tmp_path / "out")]
    argv += {"predict": [os.path.join(tiny_run, "curves.png")],
             "propose": ["--data", "synthetic"]}.get(command, [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"rpn {command}: error: --ctx cpu:0,1: rpn {command} runs on one device; "
                   "give one, e.g. --ctx gpu:0 (only rpn train splits batches over several)")
    assert not os.path.exists(tmp_path / "out")
