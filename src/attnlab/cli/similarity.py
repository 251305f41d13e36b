"""``attnlab similarity TEXT_A TEXT_B``: the cosine similarity of two sentence embeddings of a
pretrained BERT."""

from __future__ import annotations

import argparse
import json

from attnlab.cli.common import Parser, add_pretrained_option, text, warnings_as_notices


def parse(prog: str, argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog=prog, description=__doc__)
    parser.add_argument("text_a", type=text, metavar="TEXT_A", help="the first text")
    parser.add_argument("text_b", type=text, metavar="TEXT_B", help="the second text")
    add_pretrained_option(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser.parse_intermixed_args(argv)


def run(args: argparse.Namespace) -> int:
    from attnlab.pretrained import load_pretrained

    model = load_pretrained(args.pretrained)
    with warnings_as_notices():
        cosine = model.similarity(args.text_a, args.text_b)
    if args.json:
        result = {"text_a": args.text_a, "text_b": args.text_b, "cosine": cosine}
        print(json.dumps({"model": str(model.path), **result}, ensure_ascii=False))
    else:
        print(f"cosine similarity: {cosine:.4f}")
    return 0
