"""Typed command options: each command's defaults and help text live in one frozen dataclass, and the
command line is built from it, so `puppet.py` and the Python API cannot disagree about a default.

A field made with ``option()`` becomes ``--field-name`` (underscores as dashes). Old spellings are kept
as aliases for one release; using one prints a note naming the new spelling.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")
NOTE = "note: {old} is now {new}; the old spelling goes in the next release"


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a user's mistake as one `error:` line (and where the options are listed), like
    every other user error of the tool, instead of the whole usage block; exit code 2 as before."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


# argparse types: a bad value fails at parse time with a one-line message
def part_list(text: str) -> tuple[int, ...]:
    """Part numbers, e.g. 1,2,5."""
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of part numbers, e.g. 1,2,3")


def at_least(low: float, kind: type = int) -> Callable[[str], float]:
    """An argparse type: a number of `kind` that is at least `low` (out-of-range values fail at parse time)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {'whole ' if kind is int else ''}number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is too small: use {low:g} or more")
        return value
    return parse


def positive(text: str) -> float:
    """An argparse type: a number above zero (time budgets)."""
    value = at_least(0.0, float)(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 is too small: use a number above 0")
    return value


def output_size(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT, e.g. 1280x720."""
    from core.paste import parse_size
    from motion.errors import UserError
    try:
        return parse_size(text)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix(f"--size {text}: ")) from None


def picture_path(text: str) -> str:
    """A .png or .jpg file name (contact sheets)."""
    if Path(text).suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise argparse.ArgumentTypeError(f"'{text}' is not a .png or .jpg file name")
    return text


@dataclasses.dataclass(frozen=True)
class Cli:
    """How a field appears on the command line."""
    help: str
    aliases: tuple[str, ...] = ()  # old spellings, accepted with a note
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    negative: str | None = None  # a boolean defaulting to True: the flag that turns it off, e.g. --absolute
    repeat: bool = False  # may be given several times; the values form a tuple
    positional: bool = False
    required: bool = False
    shown: str | None = None  # the default as a user writes it, when its Python form reads badly


def option(default: Any, help: str, **cli: Any) -> Any:
    """A dataclass field that is also a command-line option (see Cli for the keywords)."""
    return dataclasses.field(default=default, metadata={"cli": Cli(help, **cli)})


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _help(text: str, default: Any, cli: Cli) -> str:
    """The help text with the default shown (argparse fills %(default)s from the dataclass default)."""
    if cli.shown:
        return f"{text} (default: {cli.shown})"
    if cli.required or default in (None, ()) or isinstance(default, bool) or cli.repeat:
        return text
    return f"{text} (default: %(default)s)"


def add_options(parser: argparse.ArgumentParser, options: type) -> None:
    """One argparse option per field of the options dataclass, with its default and help."""
    for field in dataclasses.fields(options):
        cli: Cli = field.metadata["cli"]
        default = field.default
        if cli.positional:
            nargs = ("+" if cli.required else "*") if cli.repeat else None
            parser.add_argument(field.name, nargs=nargs, type=cli.type, help=cli.help)
            continue
        names = (flag(field.name), *cli.aliases)
        if isinstance(default, bool) and cli.negative:
            group = parser.add_mutually_exclusive_group()
            group.add_argument(*names, dest=field.name, action="store_true", default=default,
                               help=f"{cli.help} (default)" if default else cli.help)
            group.add_argument(cli.negative, dest=field.name, action="store_false",
                               help=f"turn {flag(field.name)} off")
        elif isinstance(default, bool):
            action = argparse.BooleanOptionalAction if default else "store_true"
            parser.add_argument(*names, dest=field.name, action=action, default=default,
                                help=f"{cli.help} (default: on)" if default else cli.help)
        else:
            parser.add_argument(*names, dest=field.name, type=cli.type, choices=cli.choices, metavar=cli.metavar,
                                required=cli.required, action="append" if cli.repeat else None,
                                default=None if cli.repeat else default, help=_help(cli.help, default, cli))


def from_args(options: type[T], args: argparse.Namespace) -> T:
    """The options dataclass from parsed arguments; a repeatable option not given keeps its default."""
    values = {}
    for field in dataclasses.fields(options):
        value = getattr(args, field.name)
        if field.metadata["cli"].repeat:
            value = tuple(value) if value else field.default
        values[field.name] = value
    return options(**values)


def renamed(options: type, argv: Sequence[str]) -> list[str]:
    """The notes for old spellings used in argv (``--old`` or ``--old=value``)."""
    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    notes = []
    for field in dataclasses.fields(options):
        for alias in field.metadata["cli"].aliases:
            if alias in given:
                notes.append(NOTE.format(old=alias, new=flag(field.name)))
    return notes


BACKEND_HELP = ("inference backend: auto (the fastest that keeps 35 dB against FP32 on this machine, chosen when "
                "it opens), torch, torch-fused, torch-bf16, torch-bf16-all, torch-bf16-compiled, onnxruntime, "
                "onnxruntime-int8, tensorrt or tensorrt-fp16 (see export/backends.py)")
DEFAULT_BACKEND = "auto"
FULL_FRAME_HELP = ("paste the animated face back into the whole avatar photo, at the photo's resolution "
                   "(feathered seam, colours matched to the photo)")
DETAIL_HELP = ("the photo's own detail and the model's error at rest, moved by the model's motion (core/detail.py): "
               "with --full-frame at the output's resolution, animate without it at the model's size (--no-detail: "
               "the model's frame as drawn)")
EXPRESSION_HELP = ("move the avatar's mouth, chin and eyelids as the driver's move, by dlib's 68 facial landmarks "
                   "on both faces (core/expression.py); needs dlib and, live, --tracker dlib or auto")
EXPORT_DIR_HELP = ("exported graphs for onnxruntime/tensorrt (default: a cache folder keyed by the checkpoint's hash, "
                   "exported on first use)")


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """The model every command that runs one takes (no config/checkpoint: the shipped model)."""
    config: str | None = option(None, "YAML config (official format; default: the shipped model's)")
    checkpoint: str | None = option(None, "checkpoint .pth.tar (official layout; default: the shipped model)")
    cpu: bool = option(False, "run on the CPU even when a GPU is present")


@dataclasses.dataclass(frozen=True)
class ClipOptions(ModelOptions):
    """An avatar photo driven by a clip, written to a file or folder."""
    avatar: str | None = option(None, "the avatar photo (default: the bundled checkpoints/avatar.png)",
                                aliases=("--source",))
    driving: str | None = option(None, "driving video (mp4, avi, gif) or folder of frames (default: the bundled "
                                 "checkpoints/driving.mp4)", aliases=("--input",))
    output: str | None = option(None, "output video (.mp4, .gif, .avi) or folder for PNG frames", required=True)
    sheet: str | None = option(None, "also write a contact sheet PNG: driving frames over the results",
                               type=picture_path)


@dataclasses.dataclass(frozen=True)
class AnimateOptions(ClipOptions):
    relative: bool = option(True, "move the avatar by the driver's motion since the first frame",
                            negative="--absolute")
    adapt_scale: bool = option(False, "scale relative motion by the face-size ratio (convex hull of the keypoints)")
    backend: str = option(DEFAULT_BACKEND, BACKEND_HELP)
    export_dir: str | None = option(None, EXPORT_DIR_HELP)
    full_frame: bool = option(False, FULL_FRAME_HELP)
    detail: bool = option(True, DETAIL_HELP)
    expression: bool = option(True, EXPRESSION_HELP)
    size: tuple[int, int] | None = option(None, "output size WIDTHxHEIGHT, e.g. 1280x720: frames are fitted and "
                                          "padded, not stretched (default: as rendered)", type=output_size)


@dataclasses.dataclass(frozen=True)
class SwapOptions(ClipOptions):
    parts: tuple[int, ...] | None = option(None, "parts to take from the avatar, comma separated (0 is the "
                                           "background; default: the config's part_swap_params.swap_index, "
                                           "else 1,2,5)", type=part_list, aliases=("--swap-index",))
    source_segmentation: bool = option(False, "choose the parts on the avatar's segmentation (moved into the "
                                       "driving pose) instead of the driving frame's")
