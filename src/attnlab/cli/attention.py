"""``attnlab attention``: the attention of a model for one input.

  a run's model:      attnlab attention RUN_DIR INPUT --out view.html
  a pretrained BERT:  attnlab attention --pretrained minilm "Some text" --out view.html

--out view.html writes the interactive explorer (one self-contained file that works
offline: head view, model view, every kind of attention); --out attn.png writes a
layer x head grid of heatmaps."""

from __future__ import annotations

import argparse
from pathlib import Path

from attnlab.cli.common import Parser, given_path, text, warnings_as_notices
from attnlab.errors import InputError
from attnlab.files import check_output_file


def parse(prog: str, argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog=prog, description=__doc__)
    parser.add_argument("inputs", nargs="+", metavar="[RUN_DIR] INPUT", help='e.g. RUN "3 1 4 1 5"')
    parser.add_argument(
        "--pretrained",
        default=None,
        metavar="minilm|PATH",
        help="use a pretrained BERT instead of a run: 'minilm' or a Hugging Face BERT "
        "checkpoint directory",
    )
    parser.add_argument(
        "--out",
        type=given_path,
        default=Path("attention.png"),
        help="output: .html (interactive explorer) or .png (heatmaps)",
    )
    args = parser.parse_intermixed_args(argv)
    if len(args.inputs) > 2:
        parser.error("give one RUN_DIR and one INPUT (quote an input with spaces)")
    args.run_dir = Path(args.inputs[0]) if len(args.inputs) == 2 else None
    try:
        args.input = text(args.inputs[-1])
    except argparse.ArgumentTypeError as e:
        parser.error(f"argument INPUT: {e}")
    return args


def _pretrained_views(args: argparse.Namespace, shown: str, suffix: str) -> Path:
    from attnlab.pretrained import load_pretrained
    from attnlab.viz import plot_attention_grid
    from attnlab.viz.explorer import save_explorer

    if args.run_dir is not None:
        raise InputError("give either a RUN_DIR or --pretrained, not both")
    model = load_pretrained(args.pretrained)
    with warnings_as_notices():
        views = model.attention_views(args.input)
    if suffix == ".png":
        first = views[0]
        return plot_attention_grid(
            first.maps, first.query_labels, first.key_labels, args.out, first.title
        )
    return save_explorer(views, args.out, title=f"{args.pretrained}: {shown}")


def _run_views(args: argparse.Namespace, shown: str, suffix: str) -> Path:
    from attnlab.runs import load_run
    from attnlab.viz.explorer import save_explorer

    if args.run_dir is None:
        raise InputError("give a RUN_DIR before the input, or --pretrained minilm|PATH")
    loaded = load_run(args.run_dir)
    if suffix == ".png":
        return loaded.task.plot_attention(loaded.model, args.input, args.out)
    views = loaded.task.attention_views(loaded.model, args.input)
    return save_explorer(views, args.out, title=f"{loaded.task.name} ({loaded.dir.name}): {shown}")


def run(args: argparse.Namespace) -> int:
    suffix = args.out.suffix.lower()
    if suffix not in {".png", ".html", ".htm"}:
        raise InputError(
            f"--out must be a .png (heatmaps) or .html (interactive explorer) file; got {args.out}"
        )
    check_output_file(args.out)
    shown = " ".join(args.input.split())  # the input in the explorer's title, on one line
    shown = shown if len(shown) <= 80 else shown[:79] + "\u2026"
    views = _pretrained_views if args.pretrained is not None else _run_views
    print(f"attention: {views(args, shown, suffix)}")
    return 0
