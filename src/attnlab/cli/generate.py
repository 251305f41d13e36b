"""``attnlab generate RUN_DIR`` or ``attnlab generate --pretrained DIR``: continue a prompt with
a trained language model, one token at a time, printing each token as it is produced. Past the
model's context window (block_size) the window slides by half a block.

--pretrained DIR runs a local Hugging Face folder of the GPT-2 or Llama family (config.json,
model.safetensors or sharded safetensors with model.safetensors.index.json, tokenizer.json) on
attnlab's own blocks: no download, no pickle, no transformers. Generation stops early at the
folder's end-of-sequence token."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from attnlab.cli.common import Parser, add_device_option, given_path, text
from attnlab.errors import InputError, RunDirError

if TYPE_CHECKING:
    from torch import Tensor, nn

MAX_NEW_TOKENS = 10**6


def parse(prog: str, argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog=prog, description=__doc__)
    parser.add_argument(
        "run_dir",
        type=given_path,
        nargs="?",
        metavar="RUN_DIR",
        help="a run directory (or --pretrained)",
    )
    parser.add_argument(
        "--pretrained",
        type=given_path,
        default=None,
        metavar="DIR",
        help="instead of RUN_DIR: a local Hugging Face GPT-2 or Llama folder (config.json, "
        "safetensors weights, tokenizer.json)",
    )
    parser.add_argument(
        "--prompt", type=text, default=None, help="the text to continue (default: a newline)"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=500, metavar="N", help="how many tokens to write"
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        metavar="X",
        help="divide the logits by X (below 1: safer text; 0: always the most likely token)",
    )
    parser.add_argument(
        "--top-k", type=int, default=None, metavar="K", help="sample from the K likeliest tokens"
    )
    parser.add_argument(
        "--top-p",
        type=float,
        default=None,
        metavar="P",
        help="sample from the smallest set of tokens whose probabilities reach P, in (0, 1]",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed, for repeatable text")
    parser.add_argument(
        "--stop", type=text, default=None, metavar="STR", help="stop once STR is written"
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="no key/value cache: recompute the whole context at every step (slower, same text)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="preallocated key/value caches and torch.compile'd decoding steps (the first step "
        "compiles for seconds, on the CPU with a C++ compiler; the same text)",
    )
    add_device_option(parser)
    return parser.parse_intermixed_args(argv)


def _check(args: argparse.Namespace) -> None:
    if (args.run_dir is None) == (args.pretrained is None):
        raise InputError(
            "give exactly one of RUN_DIR (a run directory) and --pretrained DIR (a Hugging Face "
            "folder)"
        )
    if args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be at least 1; got {args.max_new_tokens}")
    if args.max_new_tokens > MAX_NEW_TOKENS:
        raise InputError(
            f"--max-new-tokens must be at most {MAX_NEW_TOKENS:,}; got {args.max_new_tokens}"
        )
    if not math.isfinite(args.temperature):
        raise InputError(f"--temperature must be a finite number; got {args.temperature}")
    if args.temperature < 0:
        raise InputError(f"--temperature must be 0 or more; got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise InputError(f"--top-k must be at least 1; got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise InputError(f"--top-p must be in (0, 1]; got {args.top_p}")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise InputError(f"--seed must be from 0 to 2^63 - 1; got {args.seed}")
    if args.stop == "":
        raise InputError("--stop must not be empty")
    if args.compile and args.no_cache:
        raise InputError("--compile needs the key/value cache; drop --no-cache")


def run(args: argparse.Namespace) -> int:
    from attnlab.runs import load_run
    from attnlab.tasks.base import TextGenerator
    from attnlab.training.devices import resolve_device

    _check(args)
    if args.pretrained is not None:
        return _run_pretrained(args)
    loaded = load_run(args.run_dir)
    task = loaded.task
    if not isinstance(task, TextGenerator):
        raise RunDirError(
            f"{args.run_dir} is a run of task {task.name!r}, which does not generate text "
            "(generate needs a language-model run, e.g. of shakespeare)"
        )
    device = resolve_device(args.device)
    prompt = "\n" if args.prompt is None else args.prompt  # nanoGPT's sample.py starts there too
    input_ids = task.encode_prompt(prompt).to(device)  # (1, T)
    model: Any = loaded.model.to(device)  # a language model (make_cache, as generate reads)
    if args.compile and model.make_cache() is None:  # before the prompt is printed
        raise InputError(
            "--compile needs the key/value cache, which this run's blocks (your own) do not "
            "keep: drop --compile"
        )
    print(prompt, end="", flush=True)
    try:
        _sample(args, model, input_ids, task.decode, None, _print_new(task.decode))
    finally:
        print()  # the text ends its line, even when a stop signal cuts it short
    return 0


def _print_new(decode: Callable[[list[int]], str]) -> Callable[[Tensor], None]:
    """A callback that prints each step's new ids ``(1,)``, decoded, as they come."""
    return lambda new_ids: print(decode(new_ids.tolist()), end="", flush=True)


def _sample(
    args: argparse.Namespace,
    model: nn.Module,
    input_ids: Tensor,
    decode: Callable[[list[int]], str],
    eos_id: Sequence[int] | None,
    on_token: Callable[[Tensor], None],
) -> None:
    """Continue ``input_ids`` ``(1, T)`` with the sampling options the user gave."""
    from attnlab.generation import generate

    generate(
        model,
        input_ids,
        args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        use_cache=not args.no_cache,
        seed=args.seed,
        stop=args.stop,
        decode=decode,
        eos_id=eos_id,
        on_token=on_token,
        compile=args.compile,
    )


def _run_pretrained(args: argparse.Namespace) -> int:
    """``generate --pretrained DIR``: the prompt and its continuation, decoded as one text."""
    from attnlab.pretrained_lm import load_pretrained_lm
    from attnlab.training.devices import resolve_device

    loaded = load_pretrained_lm(args.pretrained)
    device = resolve_device(args.device)
    prompt = "\n" if args.prompt is None else args.prompt
    input_ids = loaded.encode_prompt(prompt).to(device)  # (1, T)
    stream = _TextStream(loaded.tokenizer.decode, input_ids[0].tolist())
    model = loaded.model.to(device)
    on_token = lambda new_ids: stream.add(new_ids.tolist())  # noqa: E731
    try:
        _sample(args, model, input_ids, loaded.tokenizer.decode, loaded.eos_ids or None, on_token)
    finally:
        stream.finish()  # the text ends its line, even when a stop signal cuts it short
    return 0


class _TextStream:
    """Prints the decoding of a growing list of ids as it grows.

    Decoding token by token would lose what depends on neighbours (a word's leading space in
    SentencePiece-style tokenizers, a character split over byte-level tokens), so the whole
    list is decoded each time and only the new end is printed; text ending in an incomplete
    character (U+FFFD) waits for the next token.
    """

    def __init__(self, decode: Callable[[list[int]], str], ids: list[int]) -> None:
        self.decode, self.ids, self.printed = decode, list(ids), ""
        self._flush()

    def add(self, new_ids: list[int]) -> None:
        self.ids.extend(new_ids)
        self._flush()

    def finish(self) -> None:
        self._flush(final=True)
        print()

    def _flush(self, final: bool = False) -> None:
        text = self.decode(self.ids)
        if text.startswith(self.printed) and (final or not text.endswith("\ufffd")):
            print(text[len(self.printed) :], end="", flush=True)
            self.printed = text
