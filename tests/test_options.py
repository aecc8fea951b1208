"""One option vocabulary: every command's parser comes from its options dataclass, the same thing has the
same flag and default everywhere, old spellings still work with a note, and every option has help."""
from __future__ import annotations

import dataclasses

import pytest

import puppet
from core.options import flag, renamed

# what a command needs at least, so that parsing succeeds
REQUIRED = {"animate": ["--output", "o.mp4"], "swap": ["--output", "o.mp4"], "export": ["--config", "c", "--checkpoint",
            "k", "--output", "d"], "make-data": ["--output", "d"], "prepare-data": ["v.mp4", "--output", "d"],
            "make-face-data": ["--trajectories", "t", "--output", "d"], "personalize": ["me.mp4"],
            "train": ["--config", "c", "--data", "d"], "average": ["a", "--config", "c", "--data", "d", "--output", "o"],
            "split-parts": ["k", "--config", "c", "--data", "d", "--output", "o"],
            "eval": ["--config", "c", "--checkpoint", "k", "--data", "d"]}


def parse(command: str, *args: str):
    _, options, _ = puppet.COMMANDS[command]
    return puppet.from_args(options, puppet.build_parser().parse_args([command, *REQUIRED.get(command, []), *args]))


@pytest.mark.parametrize("command", sorted(puppet.COMMANDS))
def test_a_bare_command_line_gives_the_dataclass_defaults(command):
    parsed = parse(command)
    for field in dataclasses.fields(parsed):
        given = REQUIRED.get(command, [])
        if flag(field.name) in given or field.metadata["cli"].positional:
            continue
        assert getattr(parsed, field.name) == field.default, (command, field.name)


def test_the_same_thing_has_the_same_name_and_default_everywhere():
    """The flags the issue found spelt several ways: one spelling and one default per concept."""
    seen: dict[str, set] = {}
    for command, (_, options, _) in puppet.COMMANDS.items():
        for field in dataclasses.fields(options):
            if field.name in ("relative", "adapt_scale", "backend", "cpu", "export_dir", "threads", "parts"):
                seen.setdefault(field.name, set()).add(field.default)
    assert seen["relative"] == {True} and seen["adapt_scale"] == {False} and seen["backend"] == {"auto"}
    parser_flags = {command: set(puppet.build_parser()._subparsers._group_actions[0].choices[command]
                                 ._option_string_actions) for command in puppet.COMMANDS}
    for command in ("animate", "swap", "live"):
        assert {"--avatar", "--driving", "--output"} <= parser_flags[command], command
    assert {"--parts", "--absolute", "--relative"} <= parser_flags["live"]
    assert "--parts" in parser_flags["swap"] and "--absolute" in parser_flags["animate"]
    for command in puppet.COMMANDS:  # where results go is --output in every command that writes
        assert "--out" not in parser_flags[command] or "--output" in parser_flags[command], command


@pytest.mark.parametrize("command, old, new, value, field, expected", [
    ("animate", "--source", "--avatar", "a.png", "avatar", "a.png"),
    ("animate", "--input", "--driving", "d.mp4", "driving", "d.mp4"),
    ("swap", "--swap-index", "--parts", "1,3", "parts", (1, 3)),
    ("live", "--swap", "--parts", "2", "parts", (2,)),
    ("live", "--input", "--driving", "synthetic", "driving", "synthetic"),
    ("train", "--out", "--output", "runs/x", "output", "runs/x"),
])
def test_old_spellings_still_work_with_a_note(command, old, new, value, field, expected):
    assert getattr(parse(command, old, value), field) == expected
    _, options, _ = puppet.COMMANDS[command]
    assert renamed(options, [command, old, value]) == [f"note: {old} is now {new}; the old spelling goes in the next "
                                                       "release"]
    assert renamed(options, [command, f"{new}={value}"]) == []


def test_old_spelling_note_reaches_stderr_once(capsys):
    assert puppet.main(["swap", "--swap-index", "99", "--output", "/nonexistent-dir/o.mp4"]) == 2
    err = capsys.readouterr().err
    assert err.count("note: --swap-index is now --parts") == 1 and "error:" in err


def test_every_option_has_help_and_shows_its_default():
    for command in puppet.COMMANDS:
        sub = puppet.build_parser()._subparsers._group_actions[0].choices[command]
        text = sub.format_help()
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, (command, action.dest)
        assert "%(default)s" not in text
    def help_of(command: str) -> str:  # argparse wraps lines: compare with single spaces
        return " ".join(puppet.build_parser()._subparsers._group_actions[0].choices[command].format_help().split())

    assert "(default: auto)" in help_of("animate")
    live = help_of("live")
    assert "(default: webcam:0)" in live and "(default: 0.3)" in live and "(default: 1280x720)" in live
    assert "One Euro smoothing of the keypoints (default: on)" in live


def test_absolute_turns_relative_off_and_they_exclude_each_other(capsys):
    assert parse("animate", "--absolute").relative is False and parse("animate").relative is True
    with pytest.raises(SystemExit):
        parse("live", "--relative", "--absolute")
    assert parse("live", "--no-smooth").smooth is False


def test_a_bad_option_is_one_error_line_naming_where_the_options_are(capsys):
    with pytest.raises(SystemExit) as refused:
        puppet.main(["bench", "--frames", "1"])
    assert refused.value.code == 2
    assert capsys.readouterr().err == "error: argument --frames: 1 is too small: use 2 or more; see puppet.py bench --help\n"


def test_the_command_line_is_built_without_torch():
    """`puppet.py --help` and option parsing import no torch (seconds on a small machine): the commands
    import it when they run."""
    import subprocess
    import sys

    from conftest import ROOT
    code = "import sys, puppet; puppet.build_parser().parse_args(['live', '--fps', '30']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
