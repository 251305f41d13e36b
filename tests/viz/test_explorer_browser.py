"""The attention explorer in a real browser: headless Chromium driven by Playwright.

Uses the system's Chromium (Debian packages ``chromium`` and ``chromium-driver``; never
``playwright install``). Skipped when Chromium or Playwright is missing, unless
``ATTNLAB_REQUIRE_BROWSER=1`` (set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from attnlab.viz import save_explorer, show
from attnlab.viz.views import AttentionView

from .conftest import random_maps

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The explorer's own drawing rules (explorer.js): lines below this weight are not drawn, and at
# most MAX_LINES are.
LINE_THRESHOLD = 0.01
MAX_LINES = 3000

# The colours of a vertical strip of pixels read back from a canvas, from page coordinates
# (x, y - half) to (x, y + half): [r, g, b, a, r, g, b, a, ...].
READ_STRIP = """([canvasId, x, y, half]) => {
  const canvas = document.getElementById(canvasId);
  const box = canvas.getBoundingClientRect();
  const ratio = canvas.width / box.width;
  const px = Math.round((x - box.left) * ratio), py = Math.round((y - half - box.top) * ratio);
  const height = Math.max(1, Math.round(2 * half * ratio));
  return Array.from(canvas.getContext("2d").getImageData(px, py, 1, height).data);
}"""


def _unavailable(reason: str) -> None:
    if os.environ.get("ATTNLAB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and ATTNLAB_REQUIRE_BROWSER=1 requires the browser tests")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium, or a skip (a failure under ATTNLAB_REQUIRE_BROWSER=1)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    executable = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if executable is None:
        _unavailable("chromium is not installed (apt-get install chromium chromium-driver)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Opened:
    """A page showing an explorer, with everything it logged or requested."""

    page: Any
    url: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def check_clean(self) -> None:
        """No console error, no exception, and no request but the page itself."""
        assert self.errors == []
        foreign = [u for u in self.requests if u != self.url and not u.startswith("data:")]
        assert foreign == [], foreign


def open_page(browser, path: Path) -> Opened:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    opened = Opened(page, path.resolve().as_uri())
    page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: opened.errors.append(str(e)))
    page.on("request", lambda r: opened.requests.append(r.url))
    page.goto(opened.url)
    page.wait_for_selector("html[data-ready=true]")
    return opened


def point(page, call: str) -> tuple[float, float]:
    p = page.evaluate(f"attnlabExplorer.{call}")
    return p["x"], p["y"]


def pixel(page, canvas_id: str, x: float, y: float) -> list[int]:
    return page.evaluate(READ_STRIP, [canvas_id, x, y, 0])[:4]


def row_is_blank(page, x: float, y: float) -> bool:
    """No line passes x within the token row centred on y (each head's lines are shifted a
    little within the row, so the whole row's height is read)."""
    strip = page.evaluate(READ_STRIP, ["head-canvas", x, y, 9])
    return all(value >= 254 for i, value in enumerate(strip) if i % 4 != 3)


def drawn_lines_of(weights: torch.Tensor, side: str, index: int) -> int:
    """Lines the explorer must draw for one focused token: (head, token) pairs over the threshold.

    ``weights`` is one layer ``(H, T_q, T_k)`` rounded as the page embeds it (4 decimals).
    """
    rounded = torch.round(weights.float() * 10_000)  # in units of 1e-4
    picked = rounded[:, index, :] if side == "query" else rounded[:, :, index]
    return int((picked >= round(LINE_THRESHOLD * 10_000)).sum())


def test_head_view_layers_hover_and_heads(browser, seq2seq_views, tmp_path):
    path = save_explorer(seq2seq_views, tmp_path / "view.html", title="translation")
    opened = open_page(browser, path)
    page = opened.page
    from playwright.sync_api import expect

    canvas = page.locator("#head-canvas")
    expect(canvas).to_have_attribute("data-layer", "0")
    expect(canvas).to_have_attribute("data-heads", "0,1,2,3")
    encoder = seq2seq_views[0]
    T = len(encoder.query_labels)

    # Changing the layer changes what is drawn: the description and the pixels.
    signature = canvas.get_attribute("data-signature")
    pixels = canvas.evaluate("c => c.toDataURL()")
    page.select_option("#layer-select", "1")
    expect(canvas).to_have_attribute("data-layer", "1")
    assert canvas.get_attribute("data-signature") != signature
    assert canvas.evaluate("c => c.toDataURL()") != pixels

    # Without focus, lines leave from many query rows.
    starts = [point(page, f'lineEnd("query", {q})') for q in range(T)]
    assert sum(not row_is_blank(page, x + 4, y) for x, y in starts) >= 2

    # Hovering query 2 keeps only its lines and highlights it.
    page.mouse.move(*point(page, 'tokenCenter("query", 2)'))
    expect(canvas).to_have_attribute("data-focus", "query:2")
    assert canvas.get_attribute("data-line-queries") == "2"
    assert int(canvas.get_attribute("data-lines")) == drawn_lines_of(encoder.maps[1], "query", 2)
    for q, (x, y) in enumerate(starts):
        assert row_is_blank(page, x + 4, y) == (q != 2), q
    label_x, label_y = point(page, 'tokenCenter("query", 2)')
    assert pixel(page, "head-canvas", label_x - 30, label_y) != pixel(
        page, "head-canvas", label_x - 30, point(page, 'tokenCenter("query", 4)')[1]
    )  # the focused token's row is highlighted, another's is not

    # Hovering key 4 keeps only the lines into it.
    page.mouse.move(*point(page, 'tokenCenter("key", 4)'))
    expect(canvas).to_have_attribute("data-focus", "key:4")
    assert canvas.get_attribute("data-line-keys") == "4"
    assert int(canvas.get_attribute("data-lines")) == drawn_lines_of(encoder.maps[1], "key", 4)
    ends = [point(page, f'lineEnd("key", {k})') for k in range(T)]
    for k, (x, y) in enumerate(ends):
        assert row_is_blank(page, x - 4, y) == (k != 4), k

    # A click pins the focus; moving away keeps it, and so does another layer.
    page.mouse.click(*point(page, 'tokenCenter("query", 1)'))
    page.mouse.move(5, 5)
    expect(canvas).to_have_attribute("data-pinned", "true")
    expect(canvas).to_have_attribute("data-focus", "query:1")
    page.select_option("#layer-select", "0")
    expect(canvas).to_have_attribute("data-layer", "0")
    expect(canvas).to_have_attribute("data-focus", "query:1")
    assert canvas.get_attribute("data-line-queries") == "1"
    assert int(canvas.get_attribute("data-lines")) == drawn_lines_of(encoder.maps[0], "query", 1)
    page.mouse.click(*point(page, 'tokenCenter("query", 1)'))
    page.mouse.move(5, 5)
    expect(canvas).to_have_attribute("data-focus", "")

    # Head toggles: click hides a head, double-click shows it alone, "All heads" restores.
    page.click('#head-toggles button[data-head="0"]')
    expect(canvas).to_have_attribute("data-heads", "1,2,3")
    page.dblclick('#head-toggles button[data-head="2"]')
    expect(canvas).to_have_attribute("data-heads", "2")
    expect(page.locator('#head-toggles button[data-head="2"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    page.click("#heads-all")
    expect(canvas).to_have_attribute("data-heads", "0,1,2,3")

    # Cross-attention: T_q != T_k, and the layer picker follows the view's 3 layers.
    page.select_option("#view-select", "2")
    expect(canvas).to_have_attribute("data-view", "2")
    assert page.locator("#layer-select option").count() == 3
    page.mouse.move(*point(page, 'tokenCenter("key", 5)'))
    expect(canvas).to_have_attribute("data-focus", "key:5")
    assert canvas.get_attribute("data-line-keys") == "5"
    cross = seq2seq_views[2]
    assert int(canvas.get_attribute("data-lines")) == drawn_lines_of(cross.maps[1], "key", 5)

    screenshot = tmp_path / "explorer.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"explorer screenshot: {screenshot}")
    opened.check_clean()


def test_model_view_detail_and_png_export(browser, seq2seq_views, tmp_path):
    from PIL import Image
    from playwright.sync_api import expect

    opened = open_page(browser, save_explorer(seq2seq_views, tmp_path / "view.html"))
    page = opened.page

    # Export PNG in the head view: the head canvas, as a real PNG.
    with page.expect_download() as download:
        page.click("#export-png")
    assert download.value.suggested_filename == "encoder-self-attention-layer1.png"
    png = Path(download.value.path()).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = page.locator("#head-canvas").evaluate("c => [c.width, c.height]")
    assert Image.open(io.BytesIO(png)).size == (width, height)

    # The model view: a grid of layers x heads; a click opens the enlarged map.
    page.click("#tab-model")
    grid = page.locator("#model-canvas")
    expect(grid).to_have_attribute("data-maps", str(2 * 4))
    page.select_option("#view-select", "1")  # decoder self-attention: 3 layers x 4 heads
    expect(grid).to_have_attribute("data-maps", str(3 * 4))
    assert page.locator("#detail-box").is_hidden()
    page.mouse.click(*point(page, "thumbnailCenter(1, 2)"))
    detail = page.locator("#detail-canvas")
    expect(page.locator("#detail-box")).to_be_visible()
    expect(detail).to_have_attribute("data-layer", "1")
    expect(detail).to_have_attribute("data-head", "2")

    # The value under the mouse.
    page.mouse.move(*point(page, "cellCenter(3, 4)"))
    expect(detail).to_have_attribute("data-cell", "3,4")
    weight = seq2seq_views[1].maps[1][2, 3, 4].item()
    assert float(detail.get_attribute("data-value")) == pytest.approx(weight, abs=1e-4)
    expect(page.locator("#detail-readout")).to_contain_text(detail.get_attribute("data-value"))
    expect(page.locator("#detail-readout")).to_contain_text("\u201cs'\u201d")

    with page.expect_download() as download:
        page.click("#export-png")
    assert download.value.suggested_filename == "decoder-self-attention-layer2-head3.png"
    assert Path(download.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    page.click("#detail-close")
    expect(page.locator("#grid-box")).to_be_visible()
    screenshot = tmp_path / "explorer-model.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"model view screenshot: {screenshot}")
    opened.check_clean()


def test_256_tokens_render(browser, tmp_path):
    from playwright.sync_api import expect

    tokens = [f"t{i}" for i in range(256)]
    view = AttentionView(random_maps(2, 4, 256, 256), tokens, tokens, "long input")
    opened = open_page(browser, save_explorer(view, tmp_path / "long.html"))
    page = opened.page
    canvas = page.locator("#head-canvas")
    lines = int(canvas.get_attribute("data-lines"))
    assert 0 < lines <= MAX_LINES <= int(canvas.get_attribute("data-candidates"))

    page.select_option("#layer-select", "1")
    expect(canvas).to_have_attribute("data-layer", "1")
    page.mouse.move(*point(page, 'tokenCenter("query", 3)'))
    expect(canvas).to_have_attribute("data-focus", "query:3")
    assert canvas.get_attribute("data-line-queries") == "3"

    page.click("#tab-model")
    expect(page.locator("#model-canvas")).to_have_attribute("data-maps", "8")
    page.mouse.click(*point(page, "thumbnailCenter(1, 3)"))
    expect(page.locator("#detail-canvas")).to_have_attribute("data-head", "3")
    page.mouse.move(*point(page, "cellCenter(10, 20)"))
    expect(page.locator("#detail-canvas")).to_have_attribute("data-cell", "10,20")

    screenshot = tmp_path / "explorer-256.png"
    page.screenshot(path=str(screenshot))
    print(f"256-token screenshot: {screenshot}")
    opened.check_clean()


def test_two_notebook_widgets_live_side_by_side(browser, seq2seq_views, tmp_path):
    notebook = tmp_path / "notebook.html"
    cells = [show(seq2seq_views, title="first"), show(seq2seq_views[2], title="second")]
    notebook.write_text(
        "<!DOCTYPE html><html><body>"
        + "".join(cell._repr_html_() for cell in cells)
        + "</body></html>",
        encoding="utf-8",
    )
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(notebook.as_uri())
    frames = [f for f in page.frames if f != page.main_frame]
    assert len(frames) == 2
    titles = []
    for frame in frames:
        frame.wait_for_selector("html[data-ready=true]")
        titles.append(frame.locator("h1").text_content())
        summary = frame.locator("#summary").text_content()
        assert re.search(r"\d+ layers \u00d7 4 heads", summary)
    assert titles == ["first", "second"]
    assert errors == []
    data = json.loads(frames[1].locator("#attnlab-data").text_content())
    assert [v["title"] for v in data["views"]] == ["cross-attention"]
