"""The ``attnlab`` command.

    attnlab train TASK [options]          train a model; prints the run directory
    attnlab compare TASK [options]        train a task's variants side by side
    attnlab eval RUN_DIR [--json]         test-set report of a run's best model
    attnlab predict RUN_DIR INPUT ...     predictions for raw inputs (--file F, - for stdin)
    attnlab translate RUN_DIR SENTENCE    translation with a translate run (--beam K)
    attnlab generate RUN_DIR --prompt P   text from a language model, streamed as it is written
                   (--pretrained DIR: a local Hugging Face GPT-2 or Llama folder instead)
    attnlab attention RUN_DIR INPUT       attention explorer (--out view.html) or heatmaps (.png)
    attnlab embed TEXT ...                sentence embeddings of a pretrained BERT (MiniLM)
    attnlab similarity TEXT_A TEXT_B      cosine similarity of two sentence embeddings
    attnlab bench [SUITE ...]             speed side by side with torch.nn / Hugging Face
    attnlab exercise start|check|solve|grade   exercises for students, with a checker

Each command is a module of this package, imported only when it runs, so ``attnlab --help``
and ``attnlab train TASK --help`` answer without importing torch. Options and positional
inputs may come in any order. A user mistake prints one line to stderr and exits with
status 2, without a traceback. A stop signal (Ctrl-C, SIGTERM, SIGHUP) prints one line and
exits with 128 + its number, after the command has cleaned up (see :func:`stop_signals_raise`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import ModuleType

from attnlab import __version__
from attnlab.cli.common import Parser
from attnlab.cli.stdout import discard, guarded_stdout
from attnlab.errors import (
    AttnlabError,
    Interrupted,
    Stopped,
    is_out_of_memory,
    out_of_memory_sentence,
)
from attnlab.files import printable

COMMANDS = {
    "train": "train a model on a task",
    "compare": "train a task's variants with the same time budget, side by side",
    "eval": "test-set report of a run",
    "predict": "predict for raw inputs",
    "translate": "translate sentences with a translate or translate-small run",
    "generate": "write text with a language-model run or a local GPT-2 / Llama folder",
    "attention": "explore (.html) or plot (.png) a model's attention for one input",
    "embed": "sentence embeddings with a pretrained BERT",
    "similarity": "cosine similarity of two texts with a pretrained BERT",
    "bench": "time attnlab side by side with its references (torch.nn, Hugging Face)",
    "exercise": "exercises to write yourself: start, check (diagnoses mistakes), solve, grade",
}
_MODULES = {"eval": "evaluate"}  # a command whose module name differs
_TITLE = 'attnlab: the Transformer of "Attention Is All You Need", from scratch in PyTorch.'


def _top_parser() -> Parser:
    listing = "\n".join(f"  {name:<12} {summary}" for name, summary in COMMANDS.items())
    parser = Parser(
        prog="attnlab",
        description=f"{_TITLE}\n\ncommands:\n{listing}",
        epilog="attnlab COMMAND --help shows a command's options.",
        usage="attnlab [--version] [-h] COMMAND ...",
    )
    parser.add_argument("--version", action="version", version=f"attnlab {__version__}")
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Inside, SIGTERM and SIGHUP raise :class:`~attnlab.errors.Interrupted`, as Ctrl-C raises
    KeyboardInterrupt, instead of ending the process on the spot: so the command cleans up on
    its way out (an atomic write removes its temporary file, ``exercise`` kills its checking
    processes, a run's lock is released) and prints one line. A signal that is ignored (``nohup``
    ignores SIGHUP) stays ignored. The training loop sets its own handlers for its duration."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set in the main thread
        return

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = {
        sig: signal.signal(sig, interrupt)
        for sig in (signal.SIGTERM, signal.SIGHUP)
        if signal.getsignal(sig) is signal.SIG_DFL
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def parse_command(argv: list[str]) -> tuple[ModuleType, argparse.Namespace]:
    """The command module and its parsed options for ``attnlab ARGV``, without running it:
    argparse exits with status 2 on an unknown command, option or bad value (0 after --help).
    """
    parser = _top_parser()
    if argv in ([], ["--"]):  # argparse would ask for "COMMAND, rest", naming its own field
        parser.error(f"give a COMMAND: {', '.join(COMMANDS)}")
    top = parser.parse_args(argv)
    command = importlib.import_module(f"attnlab.cli.{_MODULES.get(top.command, top.command)}")
    return command, command.parse(f"attnlab {top.command}", top.rest)


NOT_POSIX = (
    "the attnlab command runs on Linux and macOS, not on Windows (it locks run directories with "
    "flock and stops cleanly on POSIX signals): run it in WSL (the library, attnlab.nn and "
    "attnlab.models, needs no POSIX)"
)


def main(argv: list[str] | None = None) -> int:
    """Run ``attnlab ARGV``; returns the exit status (argparse's own errors exit 2)."""
    if os.name != "posix":
        print(f"attnlab: error: {NOT_POSIX}", file=sys.stderr)
        return 2
    argv = sys.argv[1:] if argv is None else list(argv)
    command, args = parse_command(argv)
    try:
        with stop_signals_raise(), guarded_stdout():
            return command.run(args)
    except AttnlabError as e:
        print(f"attnlab: error: {e}", file=sys.stderr)
        return 2
    except Stopped as e:  # a second stop signal during training: the files are whole
        print(f"attnlab: stopped at once by {signal.Signals(e.signum).name}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt as e:  # a stop signal outside the training loop (start-up, report)
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        note = f": {e.note}" if isinstance(e, Interrupted) and e.note else ""
        how = "" if name == "SIGINT" else f" by {name}"
        print(f"attnlab: interrupted{how}{note}", file=sys.stderr)
        return 128 + signum
    except (RuntimeError, MemoryError) as e:  # an allocation failed outside training
        if not is_out_of_memory(e):
            raise
        print(f"attnlab: error: {out_of_memory_sentence(e)}: try smaller inputs", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output went away (e.g. `attnlab generate ... | head`): stop
        # quietly, and keep Python from complaining again when it flushes stdout at exit.
        discard(sys.stdout)
        return 1
    except OSError as e:  # a path the file system refuses whatever it holds
        if e.errno != errno.ENAMETOOLONG:
            raise
        print(f"attnlab: error: {name_too_long(e)}", file=sys.stderr)
        return 2


def name_too_long(error: OSError) -> str:
    """The sentence for a path with a name longer than the file system allows (255 bytes on
    most), which ``Path.exists`` raises instead of answering; the path is cut to one line."""
    path = printable(str(error.filename)) if error.filename is not None else "a path"
    if len(path) > 80:
        path = f"{path[:60]}...{path[-15:]} ({len(path):,} characters)"
    return f"cannot use {path}: a name in it is too long for the file system"
