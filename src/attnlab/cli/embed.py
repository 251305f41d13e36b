"""``attnlab embed TEXT ...``: mean-pooled, L2-normalised sentence embeddings of a pretrained
BERT (all-MiniLM-L6-v2 by default), computed by attnlab's own encoder."""

from __future__ import annotations

import argparse
import json

from attnlab.cli.common import (
    Parser,
    add_file_option,
    add_pretrained_option,
    inputs,
    text,
    warnings_as_notices,
)


def parse(prog: str, argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog=prog, description=__doc__)
    parser.add_argument(
        "inputs", nargs="*", type=text, metavar="TEXT", help='e.g. "The cat sat on the mat"'
    )
    add_file_option(parser, "texts")
    add_pretrained_option(parser)
    parser.add_argument("--json", action="store_true", help="print the full vectors as JSON")
    return parser.parse_intermixed_args(argv)


def run(args: argparse.Namespace) -> int:
    from attnlab.pretrained import format_embeddings, load_pretrained

    texts = inputs(args, "texts", nothing="no text")
    model = load_pretrained(args.pretrained)
    with warnings_as_notices():
        embeddings = model.embed(texts)  # (N, D)
    if args.json:
        vectors = embeddings.tolist()
        items = [{"text": t, "embedding": e} for t, e in zip(texts, vectors, strict=True)]
        result = {"model": str(model.path), "dimension": embeddings.size(1), "items": items}
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(format_embeddings(texts, embeddings))
    return 0
