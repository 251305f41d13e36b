/*
 * attnlab attention explorer.
 *
 * Plain JavaScript with no dependencies and no build step. The Python side (attnlab.viz.explorer)
 * inlines this file, explorer.css and the data into one HTML page.
 *
 * Data: <script id="attnlab-data" type="application/json"> holds
 *   {title, scale, views: [{title, queries, keys, layers, heads, weights}]}
 * where weights[layer][head][query][key] is an integer: the attention weight times `scale`.
 *
 * Two views of the same weights:
 *   - head view: queries in a left column, keys in a right column, one line per (head, query, key)
 *     whose opacity and width follow the weight; hovering a token keeps only its lines.
 *   - model view: a grid of layer x head heatmaps; clicking one opens a large heatmap with labels.
 * Everything is drawn on <canvas> (fast at 256 tokens, and exportable as PNG), and only when
 * something changes: there is no animation loop.
 */
(function () {
  "use strict";

  // -- settings --------------------------------------------------------------------------------
  var LINE_THRESHOLD = 0.01; // lines of a smaller weight are not drawn
  var MIN_WEIGHT = Math.fround(LINE_THRESHOLD); // the same in float32, as the weights are stored
  var MAX_LINES = 3000; // at most this many lines, the strongest: more only hide each other
  var MAX_LABEL_WIDTH = 170; // longer token labels are cut with an ellipsis (CSS pixels)
  var MAX_CAPTION_WIDTH = 1400; // canvases widen to fit their caption up to this width
  var FONT_FAMILY = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
  var INK = "#1d2330";
  var MUTED = "#5b6475";
  var FOCUS_FILL = "#ffd966"; // background of the hovered (or pinned) token
  var TINT = "33, 86, 165"; // rgb of the tint behind tokens the focused token attends to / from
  // One colour per head: distinct on white, legible on a projector. Heads past 12 get hues.
  var HEAD_COLOURS = [
    "#1f77b4", "#e6550d", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#17becf", "#bcbd22", "#393b79", "#ad494a", "#637939",
  ];
  // Heatmap colours from weight 0 (white) to the top of the scale (deep blue).
  var HEAT_STOPS = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];
  // Canvases up to this many CSS pixels are drawn at twice their size at least, so that exported
  // PNGs stay sharp on a projector; larger ones (long inputs) at the screen's resolution.
  var SHARP_AREA = 1500000;

  // -- data --------------------------------------------------------------------------------------
  var data = JSON.parse(document.getElementById("attnlab-data").textContent);

  /** One view with its weights as Float32Arrays: weights[layer][head][query * T_k + key]. */
  function decodeView(raw) {
    var Tk = raw.keys.length;
    return {
      title: raw.title,
      queries: raw.queries,
      keys: raw.keys,
      numLayers: raw.layers,
      numHeads: raw.heads,
      weights: raw.weights.map(function (layer) {
        return layer.map(function (head) {
          var flat = new Float32Array(head.length * Tk);
          head.forEach(function (row, q) {
            for (var k = 0; k < Tk; k++) flat[q * Tk + k] = row[k] / data.scale;
          });
          return flat;
        });
      }),
    };
  }
  var views = data.views.map(decodeView);

  // -- state ---------------------------------------------------------------------------------------
  var state = {
    tab: "head", // "head" or "model"
    view: 0, // index into views
    layer: 0, // head view's layer
    heads: [], // heads[h]: is head h drawn in the head view
    focus: null, // {side: "query" | "key", index} of the hovered or pinned token
    pinned: false, // a click keeps the focus until the next click
    scale: "absolute", // heatmap colours: "absolute" (0 to 1) or "relative" (0 to the map's max)
    detail: null, // {layer, head} of the enlarged heatmap, or null for the grid
    cell: null, // {q, k} under the mouse in the enlarged heatmap
  };

  function $(id) {
    return document.getElementById(id);
  }
  var el = {
    summary: $("summary"),
    tabHead: $("tab-head"),
    tabModel: $("tab-model"),
    viewPicker: $("view-picker"),
    viewSelect: $("view-select"),
    layerPicker: $("layer-picker"),
    layerSelect: $("layer-select"),
    scalePicker: $("scale-picker"),
    scaleSelect: $("scale-select"),
    exportButton: $("export-png"),
    headPanel: $("head-panel"),
    headToggles: $("head-toggles"),
    headsAll: $("heads-all"),
    headCanvas: $("head-canvas"),
    modelPanel: $("model-panel"),
    gridBox: $("grid-box"),
    modelCanvas: $("model-canvas"),
    detailBox: $("detail-box"),
    detailClose: $("detail-close"),
    detailReadout: $("detail-readout"),
    detailCanvas: $("detail-canvas"),
  };

  // -- small helpers ---------------------------------------------------------------------------
  function clamp(x, lo, hi) {
    return Math.max(lo, Math.min(hi, x));
  }
  function font(px, bold) {
    return (bold ? "600 " : "") + px + "px " + FONT_FAMILY;
  }
  function headColour(h) {
    if (h < HEAD_COLOURS.length) return HEAD_COLOURS[h];
    return "hsl(" + ((h * 137.5) % 360).toFixed(0) + ", 60%, 42%)";
  }
  /** Make invisible tokens visible: nothing at all, or only spaces, newlines and tabs. */
  function displayLabel(label) {
    if (label === "") return "\u2205";
    if (/\S/.test(label)) return label;
    return label.replace(/ /g, "\u2423").replace(/\n/g, "\u23ce").replace(/\t/g, "\u21e5");
  }
  /** A label cut with an ellipsis to fit maxWidth, in the context's current font. */
  function fitText(ctx, text, maxWidth) {
    if (ctx.measureText(text).width <= maxWidth) return text;
    var end = text.length;
    while (end > 1 && ctx.measureText(text.slice(0, end) + "\u2026").width > maxWidth) end--;
    return text.slice(0, end) + "\u2026";
  }
  function widestLabel(ctx, labels) {
    var widest = 0;
    labels.forEach(function (label) {
      widest = Math.max(widest, ctx.measureText(displayLabel(label)).width);
    });
    return Math.min(MAX_LABEL_WIDTH, Math.ceil(widest));
  }
  var measureCtx = document.createElement("canvas").getContext("2d");

  /** Size a canvas to width x height CSS pixels and clear it to white. */
  function prepareCanvas(canvas, width, height) {
    var resolution = Math.max(window.devicePixelRatio || 1, width * height <= SHARP_AREA ? 2 : 1);
    canvas.width = Math.ceil(width * resolution);
    canvas.height = Math.ceil(height * resolution);
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    var ctx = canvas.getContext("2d");
    ctx.setTransform(resolution, 0, 0, resolution, 0, 0);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, width, height);
    return ctx;
  }
  /**
   * prepareCanvas, then a bold caption (and an optional muted note below it) at the top left:
   * the canvas widens to fit them (up to MAX_CAPTION_WIDTH), so that an exported PNG says what
   * it shows. Returns the context.
   */
  function captionedCanvas(canvas, width, height, caption, note) {
    var pad = 16;
    measureCtx.font = font(15, true);
    var needed = measureCtx.measureText(caption).width;
    measureCtx.font = font(13, false);
    if (note) needed = Math.max(needed, measureCtx.measureText(note).width);
    width = Math.max(width, Math.min(MAX_CAPTION_WIDTH, Math.ceil(needed) + 2 * pad));
    var ctx = prepareCanvas(canvas, width, height);
    ctx.textAlign = "left";
    ctx.textBaseline = "alphabetic";
    ctx.fillStyle = INK;
    ctx.font = font(15, true);
    ctx.fillText(fitText(ctx, caption, width - 2 * pad), pad, 24);
    if (note) {
      ctx.fillStyle = MUTED;
      ctx.font = font(13, false);
      ctx.fillText(fitText(ctx, note, width - 2 * pad), pad, 44);
    }
    return ctx;
  }
  /** The mouse position in a canvas's CSS pixels. */
  function mouseIn(canvas, event) {
    var box = canvas.getBoundingClientRect();
    return { x: event.clientX - box.left, y: event.clientY - box.top };
  }
  /** FNV-1a step: a running 32-bit hash of what is drawn, so tests can tell two drawings apart. */
  function hashStep(hash, value) {
    return Math.imul(hash ^ value, 16777619) >>> 0;
  }

  // Redraw at most once per frame, and only when asked.
  var drawPending = false;
  function requestDraw() {
    if (drawPending) return;
    drawPending = true;
    window.requestAnimationFrame(function () {
      drawPending = false;
      draw();
    });
  }
  function draw() {
    if (state.tab === "head") drawHeadView();
    else if (state.detail) drawDetail();
    else drawModelView();
  }

  // -- head view: layout -----------------------------------------------------------------------
  var QUERY_TITLE = "queries (attending)";
  var KEY_TITLE = "keys (attended to)";
  // Layout per view: row height and font shrink as the number of tokens grows.
  var headLayouts = [];
  function headLayout(v) {
    if (headLayouts[v]) return headLayouts[v];
    var view = views[v];
    var Tq = view.queries.length;
    var Tk = view.keys.length;
    var rows = Math.max(Tq, Tk);
    var rowHeight = rows <= 30 ? 26 : rows <= 80 ? 18 : 14;
    var fontSize = rows <= 30 ? 16 : rows <= 80 ? 13 : 11;
    measureCtx.font = font(fontSize, true);
    var queryWidth = widestLabel(measureCtx, view.queries);
    var keyWidth = widestLabel(measureCtx, view.keys);
    // The columns are at least as wide as their titles.
    measureCtx.font = font(13, false);
    queryWidth = Math.max(queryWidth, Math.ceil(measureCtx.measureText(QUERY_TITLE).width));
    keyWidth = Math.max(keyWidth, Math.ceil(measureCtx.measureText(KEY_TITLE).width));
    var pad = 16;
    var valueWidth = 44; // room for a weight printed beside a token when one head is shown
    var top = 80; // caption, note, column titles
    var layout = {
      rowHeight: rowHeight,
      fontSize: fontSize,
      pad: pad,
      top: top,
      queryWidth: queryWidth,
      keyWidth: keyWidth,
      xQueryText: pad + valueWidth + queryWidth, // query labels end here (right-aligned)
      xQuery: pad + valueWidth + queryWidth + 10, // lines start here
      lineWidth: Math.max(260, Math.min(420, rows * 8)),
      // Centre the shorter column (cross-attention has T_q != T_k).
      queryOffset: ((rows - Tq) * rowHeight) / 2,
      keyOffset: ((rows - Tk) * rowHeight) / 2,
    };
    layout.xKey = layout.xQuery + layout.lineWidth; // lines end here
    layout.xKeyText = layout.xKey + 10; // key labels start here (left-aligned)
    layout.width = layout.xKeyText + keyWidth + valueWidth + pad;
    layout.height = top + rows * rowHeight + pad;
    headLayouts[v] = layout;
    return layout;
  }
  function queryY(layout, q) {
    return layout.top + layout.queryOffset + (q + 0.5) * layout.rowHeight;
  }
  function keyY(layout, k) {
    return layout.top + layout.keyOffset + (k + 0.5) * layout.rowHeight;
  }
  /** The token under a point of the head canvas: {side, index}, or null. */
  function tokenAt(x, y) {
    var view = views[state.view];
    var layout = headLayout(state.view);
    if (x < layout.xQuery) {
      var q = Math.floor((y - layout.top - layout.queryOffset) / layout.rowHeight);
      if (q >= 0 && q < view.queries.length) return { side: "query", index: q };
    } else if (x > layout.xKey) {
      var k = Math.floor((y - layout.top - layout.keyOffset) / layout.rowHeight);
      if (k >= 0 && k < view.keys.length) return { side: "key", index: k };
    }
    return null;
  }

  // -- head view: lines ------------------------------------------------------------------------
  /**
   * Every line of one head at one layer with a weight of at least LINE_THRESHOLD, as
   * [{q, k, w}], built once per (view, layer, head): toggling heads or hovering costs nothing.
   */
  var lineCache = new Map();
  function headLines(v, layer, h) {
    var key = v + "/" + layer + "/" + h;
    if (lineCache.has(key)) return lineCache.get(key);
    var view = views[v];
    var Tk = view.keys.length;
    var W = view.weights[layer][h];
    var lines = [];
    for (var i = 0; i < W.length; i++) {
      if (W[i] >= MIN_WEIGHT) lines.push({ q: Math.floor(i / Tk), k: i % Tk, w: W[i] });
    }
    lineCache.set(key, lines);
    return lines;
  }
  /**
   * The lines to draw: those of the active heads (only the focused token's, if one is focused),
   * at most MAX_LINES of them, the strongest, in increasing weight so that strong lines end on top.
   * Returns {lines: [{h, q, k, w}], candidates: how many passed the threshold, cut: the weight
   * below which lines were left out}.
   */
  function linesToDraw(v, layer, active, focus) {
    var candidates = [];
    active.forEach(function (h) {
      headLines(v, layer, h).forEach(function (line) {
        if (focus && (focus.side === "query" ? line.q : line.k) !== focus.index) return;
        candidates.push({ h: h, q: line.q, k: line.k, w: line.w });
      });
    });
    candidates.sort(function (a, b) { return a.w - b.w || a.h - b.h; });
    var lines = candidates.slice(Math.max(0, candidates.length - MAX_LINES));
    return {
      lines: lines,
      candidates: candidates.length,
      cut: lines.length < candidates.length ? lines[0].w : LINE_THRESHOLD,
    };
  }

  // -- head view: drawing ----------------------------------------------------------------------
  function drawHeadView() {
    var v = state.view;
    var view = views[v];
    var layout = headLayout(v);
    var canvas = el.headCanvas;
    var active = [];
    state.heads.forEach(function (on, h) {
      if (on) active.push(h);
    });
    var focus = state.focus;
    var drawn = linesToDraw(v, state.layer, active, focus);

    // Caption (part of an exported PNG) and column titles.
    var headsText = active.length === view.numHeads ? "all " + view.numHeads + " heads"
      : active.length === 0 ? "no heads"
        : (active.length === 1 ? "head " : "heads ") + active.map(function (h) { return h + 1; }).join(", ");
    var caption = view.title + "  \u00b7  layer " + (state.layer + 1) + " of " + view.numLayers + "  \u00b7  " + headsText;
    var note = drawn.lines.length < drawn.candidates
      ? "The " + drawn.lines.length + " strongest of " + drawn.candidates + " lines are drawn (weight \u2265 " + drawn.cut.toFixed(3) + ")."
      : "";
    var ctx = captionedCanvas(canvas, layout.width, layout.height, caption, note);
    ctx.font = font(13, false);
    ctx.fillStyle = MUTED;
    ctx.textAlign = "right";
    ctx.fillText(QUERY_TITLE, layout.xQueryText, layout.top - 14);
    ctx.textAlign = "left";
    ctx.fillText(KEY_TITLE, layout.xKeyText, layout.top - 14);

    // The weights of the focused token to or from each token on the other side (max over the
    // heads shown): they tint the other column and, with a single head, are printed beside it.
    var other = null;
    if (focus) {
      var count = focus.side === "query" ? view.keys.length : view.queries.length;
      other = new Float32Array(count);
      var Tk = view.keys.length;
      active.forEach(function (h) {
        var W = view.weights[state.layer][h];
        for (var i = 0; i < count; i++) {
          var w = focus.side === "query" ? W[focus.index * Tk + i] : W[i * Tk + focus.index];
          if (w > other[i]) other[i] = w;
        }
      });
    }

    // Each active head's lines are shifted a little up or down within the token's row, so that
    // the heads linking the same two tokens show as a ribbon of their colours, not one blend.
    var shift = [];
    var spacing = active.length > 1 ? Math.min(2.5, (0.6 * layout.rowHeight) / (active.length - 1)) : 0;
    active.forEach(function (h, rank) {
      shift[h] = (rank - (active.length - 1) / 2) * spacing;
    });

    // Lines: opacity and width grow with the weight. One short stroke per line is the fastest
    // way for a canvas without a GPU; hence also the MAX_LINES cap.
    var flags = { queries: new Uint8Array(view.queries.length), keys: new Uint8Array(view.keys.length) };
    var hash = 2166136261;
    ctx.lineCap = "round";
    drawn.lines.forEach(function (line) {
      ctx.strokeStyle = headColour(line.h);
      ctx.globalAlpha = Math.pow(line.w, 0.7); // a little stronger than the weight: legible
      ctx.lineWidth = 0.8 + 2.6 * line.w;
      ctx.beginPath();
      ctx.moveTo(layout.xQuery, queryY(layout, line.q) + shift[line.h]);
      ctx.lineTo(layout.xKey, keyY(layout, line.k) + shift[line.h]);
      ctx.stroke();
      flags.queries[line.q] = 1;
      flags.keys[line.k] = 1;
      hash = hashStep(hashStep(hashStep(hashStep(hash, line.h), line.q), line.k), Math.round(line.w * 1e4));
    });
    ctx.globalAlpha = 1;

    drawColumn(ctx, layout, view.queries, "query", other);
    drawColumn(ctx, layout, view.keys, "key", other);

    // Describe what is drawn, for scripts and tests (the pixels say the same).
    function flagged(flags) {
      var list = [];
      flags.forEach(function (f, i) { if (f) list.push(i); });
      return list.join(",");
    }
    canvas.dataset.view = String(v);
    canvas.dataset.layer = String(state.layer);
    canvas.dataset.heads = active.join(",");
    canvas.dataset.focus = focus ? focus.side + ":" + focus.index : "";
    canvas.dataset.pinned = String(state.pinned);
    canvas.dataset.lines = String(drawn.lines.length);
    canvas.dataset.candidates = String(drawn.candidates);
    canvas.dataset.lineQueries = flagged(flags.queries);
    canvas.dataset.lineKeys = flagged(flags.keys);
    canvas.dataset.signature = hash.toString(16);
  }

  /** One column of tokens; `other` holds the focused token's weights to this column, if any. */
  function drawColumn(ctx, layout, labels, side, other) {
    var focus = state.focus;
    var isQuery = side === "query";
    var x = isQuery ? layout.xQueryText : layout.xKeyText;
    var width = isQuery ? layout.queryWidth : layout.keyWidth;
    var boxLeft = isQuery ? x - width - 6 : x - 6;
    var focusedSide = focus && focus.side === side;
    var soloHead = state.heads.filter(Boolean).length === 1;
    ctx.textBaseline = "middle";
    labels.forEach(function (label, i) {
      var y = isQuery ? queryY(layout, i) : keyY(layout, i);
      var isFocus = focusedSide && focus.index === i;
      var top = y - layout.rowHeight / 2 + 1;
      var height = layout.rowHeight - 2;
      if (isFocus) {
        ctx.fillStyle = FOCUS_FILL;
        ctx.fillRect(boxLeft, top, width + 12, height);
      } else if (focus && !focusedSide && other[i] >= MIN_WEIGHT) {
        ctx.fillStyle = "rgba(" + TINT + ", " + (0.04 + 0.56 * other[i]).toFixed(3) + ")";
        ctx.fillRect(boxLeft, top, width + 12, height);
      }
      ctx.font = font(layout.fontSize, isFocus);
      ctx.fillStyle = INK;
      ctx.textAlign = isQuery ? "right" : "left";
      ctx.fillText(fitText(ctx, displayLabel(label), width), x, y);
      if (focus && !focusedSide && soloHead && other[i] >= MIN_WEIGHT) {
        // With one head shown, print the weight beside each token the focus is linked to.
        ctx.font = font(Math.max(10, layout.fontSize - 3), false);
        ctx.fillStyle = MUTED;
        ctx.textAlign = isQuery ? "right" : "left";
        ctx.fillText(other[i].toFixed(2), isQuery ? boxLeft - 4 : boxLeft + width + 16, y);
      }
    });
  }

  function onHeadMove(event) {
    if (state.pinned) return;
    var p = mouseIn(el.headCanvas, event);
    setFocus(tokenAt(p.x, p.y));
  }
  function onHeadLeave() {
    if (!state.pinned) setFocus(null);
  }
  function onHeadClick(event) {
    var p = mouseIn(el.headCanvas, event);
    var hit = tokenAt(p.x, p.y);
    var samePin = state.pinned && sameToken(hit, state.focus);
    state.pinned = Boolean(hit) && !samePin;
    state.focus = samePin ? null : hit;
    requestDraw();
  }
  function sameToken(a, b) {
    return a === b || (a !== null && b !== null && a.side === b.side && a.index === b.index);
  }
  function setFocus(token) {
    if (sameToken(token, state.focus)) return;
    state.focus = token;
    requestDraw();
  }

  // -- head toggles ----------------------------------------------------------------------------
  /** One button per head in its line colour: click toggles it, double-click shows it alone. */
  function buildHeadToggles() {
    var H = views[state.view].numHeads;
    el.headToggles.textContent = "";
    for (var h = 0; h < H; h++) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "head-toggle";
      button.textContent = String(h + 1);
      button.title = "head " + (h + 1) + ": click to hide or show, double-click to show it alone";
      button.style.setProperty("--head", headColour(h));
      button.dataset.head = String(h);
      el.headToggles.appendChild(button);
    }
    updateHeadToggles();
  }
  function updateHeadToggles() {
    Array.prototype.forEach.call(el.headToggles.children, function (button, h) {
      button.setAttribute("aria-pressed", String(state.heads[h]));
    });
  }
  el.headToggles.addEventListener("click", function (event) {
    var h = event.target.dataset && event.target.dataset.head;
    if (h === undefined) return;
    state.heads[+h] = !state.heads[+h];
    updateHeadToggles();
    requestDraw();
  });
  el.headToggles.addEventListener("dblclick", function (event) {
    var h = event.target.dataset && event.target.dataset.head;
    if (h === undefined) return;
    // The two clicks of a double-click have toggled the head off and on again; now solo it.
    state.heads = state.heads.map(function (_, i) { return i === +h; });
    updateHeadToggles();
    requestDraw();
  });
  el.headsAll.addEventListener("click", function () {
    state.heads = state.heads.map(function () { return true; });
    updateHeadToggles();
    requestDraw();
  });

  // -- heatmaps (model view and detail) -------------------------------------------------------
  var heatLut = (function () {
    // 256 colours interpolated between HEAT_STOPS, as [r, g, b, 255, r, g, b, 255, ...].
    var lut = new Uint8ClampedArray(256 * 4);
    for (var i = 0; i < 256; i++) {
      var t = (i / 255) * (HEAT_STOPS.length - 1);
      var j = Math.min(HEAT_STOPS.length - 2, Math.floor(t));
      var f = t - j;
      for (var c = 0; c < 3; c++) lut[i * 4 + c] = Math.round(HEAT_STOPS[j][c] * (1 - f) + HEAT_STOPS[j + 1][c] * f);
      lut[i * 4 + 3] = 255;
    }
    return lut;
  })();
  function maxOf(W) {
    var top = 0;
    for (var i = 0; i < W.length; i++) if (W[i] > top) top = W[i];
    return top;
  }
  /** The top of the colour scale of one map. */
  function scaleTop(W) {
    return state.scale === "relative" ? Math.max(maxOf(W), 1e-6) : 1;
  }
  // One T_k x T_q bitmap per (view, layer, head, scale), drawn scaled wherever it is needed.
  var heatCache = new Map();
  function heatmap(v, layer, h) {
    var key = v + "/" + layer + "/" + h + "/" + state.scale;
    if (heatCache.has(key)) return heatCache.get(key);
    var view = views[v];
    var Tq = view.queries.length;
    var Tk = view.keys.length;
    var W = view.weights[layer][h];
    var top = scaleTop(W);
    var bitmap = document.createElement("canvas");
    bitmap.width = Tk;
    bitmap.height = Tq;
    var bctx = bitmap.getContext("2d");
    var image = bctx.createImageData(Tk, Tq);
    for (var i = 0; i < W.length; i++) {
      var shade = Math.round(clamp(W[i] / top, 0, 1) * 255) * 4;
      image.data[i * 4] = heatLut[shade];
      image.data[i * 4 + 1] = heatLut[shade + 1];
      image.data[i * 4 + 2] = heatLut[shade + 2];
      image.data[i * 4 + 3] = 255;
    }
    bctx.putImageData(image, 0, 0);
    heatCache.set(key, bitmap);
    return bitmap;
  }
  /** Draw a heatmap bitmap into a width x height box, crisp when enlarged, smooth when shrunk. */
  function drawHeatmap(ctx, bitmap, x, y, width, height) {
    ctx.imageSmoothingEnabled = bitmap.width > width || bitmap.height > height;
    ctx.drawImage(bitmap, x, y, width, height);
    ctx.imageSmoothingEnabled = true;
  }

  // -- model view: the grid ----------------------------------------------------------------------
  var GRID = { pad: 16, left: 78, top: 74, gap: 10 };
  function gridLayout(v) {
    var view = views[v];
    var size = clamp(Math.floor(Math.min(1100 / view.numHeads, 620 / view.numLayers)) - GRID.gap, 56, 132);
    return {
      size: size,
      width: GRID.left + view.numHeads * (size + GRID.gap) + GRID.pad,
      height: GRID.top + view.numLayers * (size + GRID.gap) + GRID.pad,
    };
  }
  function thumbnailAt(x, y) {
    var view = views[state.view];
    var layout = gridLayout(state.view);
    var step = layout.size + GRID.gap;
    var h = Math.floor((x - GRID.left) / step);
    var layer = Math.floor((y - GRID.top) / step);
    var inside = (x - GRID.left) % step < layout.size && (y - GRID.top) % step < layout.size;
    if (x < GRID.left || y < GRID.top || !inside) return null;
    if (h >= view.numHeads || layer >= view.numLayers) return null;
    return { layer: layer, head: h };
  }
  function drawModelView() {
    var v = state.view;
    var view = views[v];
    var layout = gridLayout(v);
    var ctx = captionedCanvas(el.modelCanvas, layout.width, layout.height, view.title + "  \u00b7  " +
      view.numLayers + " layers \u00d7 " + view.numHeads + " heads  \u00b7  colours " +
      (state.scale === "relative" ? "0 to each map's maximum" : "0 to 1"), "");
    ctx.font = font(12, false);
    ctx.fillStyle = MUTED;
    ctx.textBaseline = "middle";
    var step = layout.size + GRID.gap;
    for (var h = 0; h < view.numHeads; h++) {
      ctx.textAlign = "center";
      ctx.fillText("head " + (h + 1), GRID.left + h * step + layout.size / 2, GRID.top - 14);
    }
    for (var layer = 0; layer < view.numLayers; layer++) {
      ctx.textAlign = "right";
      ctx.fillStyle = MUTED;
      ctx.fillText("layer " + (layer + 1), GRID.left - 10, GRID.top + layer * step + layout.size / 2);
      for (h = 0; h < view.numHeads; h++) {
        var x = GRID.left + h * step;
        var y = GRID.top + layer * step;
        drawHeatmap(ctx, heatmap(v, layer, h), x, y, layout.size, layout.size);
        ctx.strokeStyle = "#c4cad4";
        ctx.lineWidth = 1;
        ctx.strokeRect(x - 0.5, y - 0.5, layout.size + 1, layout.size + 1);
      }
    }
    el.modelCanvas.dataset.view = String(v);
    el.modelCanvas.dataset.maps = String(view.numLayers * view.numHeads);
  }
  el.modelCanvas.addEventListener("mousemove", function (event) {
    var p = mouseIn(el.modelCanvas, event);
    el.modelCanvas.style.cursor = thumbnailAt(p.x, p.y) ? "pointer" : "default";
  });
  el.modelCanvas.addEventListener("click", function (event) {
    var p = mouseIn(el.modelCanvas, event);
    var hit = thumbnailAt(p.x, p.y);
    if (hit) openDetail(hit);
  });

  // -- model view: one enlarged heatmap ---------------------------------------------------------
  function detailLayout() {
    var view = views[state.view];
    var Tq = view.queries.length;
    var Tk = view.keys.length;
    var cell = clamp(Math.floor(640 / Math.max(Tq, Tk)), 2, 40);
    // Every label when the cells are tall enough to read one, else every `step`-th label.
    var fontSize = cell >= 12 ? Math.min(15, cell - 2) : 10;
    var step = cell >= 12 ? 1 : Math.ceil(12 / cell);
    measureCtx.font = font(fontSize, true);
    var queryWidth = widestLabel(measureCtx, view.queries);
    var keyWidth = widestLabel(measureCtx, view.keys);
    var pad = 16;
    var layout = { cell: cell, fontSize: fontSize, step: step, pad: pad, queryWidth: queryWidth, keyWidth: keyWidth };
    layout.left = pad + 22 + queryWidth + 8; // axis title, labels, gap
    layout.top = 40 + 22 + keyWidth + 8; // caption, axis title, rotated labels, gap
    layout.mapWidth = Tk * cell;
    layout.mapHeight = Tq * cell;
    layout.barX = layout.left + layout.mapWidth + 24; // colour bar
    layout.width = layout.barX + 16 + 48 + pad;
    layout.height = Math.max(layout.top + layout.mapHeight, layout.top + 120) + pad;
    return layout;
  }
  function cellAt(x, y) {
    var view = views[state.view];
    var layout = detailLayout();
    var k = Math.floor((x - layout.left) / layout.cell);
    var q = Math.floor((y - layout.top) / layout.cell);
    if (x < layout.left || y < layout.top || q >= view.queries.length || k >= view.keys.length) return null;
    return { q: q, k: k };
  }
  function drawDetail() {
    var v = state.view;
    var view = views[v];
    var layer = state.detail.layer;
    var h = state.detail.head;
    var W = view.weights[layer][h];
    var Tk = view.keys.length;
    var layout = detailLayout();
    var canvas = el.detailCanvas;
    var ctx = captionedCanvas(canvas, layout.width, layout.height,
      view.title + "  \u00b7  layer " + (layer + 1) + ", head " + (h + 1), "");
    var cell = state.cell;

    drawHeatmap(ctx, heatmap(v, layer, h), layout.left, layout.top, layout.mapWidth, layout.mapHeight);
    ctx.strokeStyle = "#c4cad4";
    ctx.lineWidth = 1;
    ctx.strokeRect(layout.left - 0.5, layout.top - 0.5, layout.mapWidth + 1, layout.mapHeight + 1);

    // Axis titles.
    ctx.font = font(13, false);
    ctx.fillStyle = MUTED;
    ctx.textAlign = "left";
    ctx.fillText("keys (attended to) \u2192", layout.left, 52);
    ctx.save();
    ctx.translate(layout.pad + 12, layout.top);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "right";
    ctx.fillText("\u2190 queries (attending)", 0, 0); // reads upwards; the arrow points down
    ctx.restore();

    // Token labels: queries left of the rows, keys rotated above the columns.
    ctx.textBaseline = "middle";
    view.queries.forEach(function (label, q) {
      var isCell = cell && cell.q === q;
      if (!isCell && q % layout.step) return;
      ctx.font = font(layout.fontSize, isCell);
      ctx.fillStyle = isCell ? INK : MUTED;
      ctx.textAlign = "right";
      ctx.fillText(fitText(ctx, displayLabel(label), layout.queryWidth), layout.left - 6, layout.top + (q + 0.5) * layout.cell);
    });
    view.keys.forEach(function (label, k) {
      var isCell = cell && cell.k === k;
      if (!isCell && k % layout.step) return;
      ctx.save();
      ctx.translate(layout.left + (k + 0.5) * layout.cell, layout.top - 6);
      ctx.rotate(-Math.PI / 2);
      ctx.font = font(layout.fontSize, isCell);
      ctx.fillStyle = isCell ? INK : MUTED;
      ctx.textAlign = "left";
      ctx.fillText(fitText(ctx, displayLabel(label), layout.keyWidth), 0, 0);
      ctx.restore();
    });

    // Colour bar.
    var top = scaleTop(W);
    var barHeight = Math.min(layout.mapHeight, 240);
    barHeight = Math.max(barHeight, 100);
    for (var i = 0; i < barHeight; i++) {
      var shade = Math.round((1 - i / (barHeight - 1)) * 255) * 4;
      ctx.fillStyle = "rgb(" + heatLut[shade] + "," + heatLut[shade + 1] + "," + heatLut[shade + 2] + ")";
      ctx.fillRect(layout.barX, layout.top + i, 16, 1);
    }
    ctx.strokeStyle = "#c4cad4";
    ctx.strokeRect(layout.barX - 0.5, layout.top - 0.5, 17, barHeight + 1);
    ctx.font = font(12, false);
    ctx.fillStyle = MUTED;
    ctx.textAlign = "left";
    ctx.fillText(top.toFixed(2), layout.barX + 22, layout.top + 4);
    ctx.fillText("0", layout.barX + 22, layout.top + barHeight - 4);

    // The cell under the mouse: outline it, and read its weight out.
    if (cell) {
      var value = W[cell.q * Tk + cell.k];
      ctx.strokeStyle = "#e6550d";
      ctx.lineWidth = 2;
      ctx.strokeRect(layout.left + cell.k * layout.cell - 1, layout.top + cell.q * layout.cell - 1, layout.cell + 2, layout.cell + 2);
      el.detailReadout.textContent = "query " + (cell.q + 1) + " \u201c" + displayLabel(view.queries[cell.q]) +
        "\u201d \u2192 key " + (cell.k + 1) + " \u201c" + displayLabel(view.keys[cell.k]) + "\u201d: " + value.toFixed(4);
      canvas.dataset.cell = cell.q + "," + cell.k;
      canvas.dataset.value = value.toFixed(4);
    } else {
      el.detailReadout.textContent = "Point at a cell to read its weight.";
      canvas.dataset.cell = "";
      canvas.dataset.value = "";
    }
    canvas.dataset.layer = String(layer);
    canvas.dataset.head = String(h);
  }
  function openDetail(which) {
    state.detail = which;
    state.cell = null;
    el.gridBox.hidden = true;
    el.detailBox.hidden = false;
    draw();
  }
  function closeDetail() {
    state.detail = null;
    state.cell = null;
    el.gridBox.hidden = false;
    el.detailBox.hidden = true;
    draw();
  }
  el.detailClose.addEventListener("click", closeDetail);
  el.detailCanvas.addEventListener("mousemove", function (event) {
    var p = mouseIn(el.detailCanvas, event);
    var hit = cellAt(p.x, p.y);
    if (hit === null && state.cell === null) return;
    if (hit && state.cell && hit.q === state.cell.q && hit.k === state.cell.k) return;
    state.cell = hit;
    requestDraw();
  });
  el.detailCanvas.addEventListener("mouseleave", function () {
    if (state.cell === null) return;
    state.cell = null;
    requestDraw();
  });

  // -- controls --------------------------------------------------------------------------------
  function fillSelect(select, labels) {
    select.textContent = "";
    labels.forEach(function (label, i) {
      var option = document.createElement("option");
      option.value = String(i);
      option.textContent = label;
      select.appendChild(option);
    });
  }
  function updateSummary() {
    var view = views[state.view];
    var text = view.title + ": " + view.numLayers + (view.numLayers === 1 ? " layer" : " layers") +
      " \u00d7 " + view.numHeads + (view.numHeads === 1 ? " head" : " heads") + ", " +
      view.queries.length + " queries \u00d7 " + view.keys.length + " keys";
    if (views.length > 1) text += "  (" + views.length + " kinds of attention)";
    el.summary.textContent = text;
  }
  /** Switch to view v: keep the layer if it exists, keep the head toggles if the heads match. */
  function selectView(v) {
    state.view = v;
    var view = views[v];
    state.layer = Math.min(state.layer, view.numLayers - 1);
    if (state.heads.length !== view.numHeads) {
      state.heads = new Array(view.numHeads).fill(true);
      buildHeadToggles();
    }
    state.focus = null;
    state.pinned = false;
    state.detail = null;
    state.cell = null;
    el.gridBox.hidden = false;
    el.detailBox.hidden = true;
    fillSelect(el.layerSelect, Array.from({ length: view.numLayers }, function (_, i) {
      return String(i + 1) + " of " + view.numLayers;
    }));
    el.layerSelect.value = String(state.layer);
    el.viewSelect.value = String(v);
    updateSummary();
    draw();
  }
  function selectTab(tab) {
    state.tab = tab;
    el.tabHead.setAttribute("aria-selected", String(tab === "head"));
    el.tabModel.setAttribute("aria-selected", String(tab === "model"));
    el.headPanel.hidden = tab !== "head";
    el.modelPanel.hidden = tab !== "model";
    el.layerPicker.hidden = tab !== "head";
    el.scalePicker.hidden = tab !== "model";
    draw();
  }
  el.tabHead.addEventListener("click", function () { selectTab("head"); });
  el.tabModel.addEventListener("click", function () { selectTab("model"); });
  el.viewSelect.addEventListener("change", function () { selectView(+el.viewSelect.value); });
  el.layerSelect.addEventListener("change", function () {
    state.layer = +el.layerSelect.value;
    if (!state.pinned) state.focus = null; // a pinned token stays: compare it across layers
    draw();
  });
  el.scaleSelect.addEventListener("change", function () {
    state.scale = el.scaleSelect.value;
    draw();
  });
  el.headCanvas.addEventListener("mousemove", onHeadMove);
  el.headCanvas.addEventListener("mouseleave", onHeadLeave);
  el.headCanvas.addEventListener("click", onHeadClick);

  // -- export ------------------------------------------------------------------------------------
  /** The canvas on screen now, and a file name saying what it shows. */
  function currentCanvas() {
    var slug = views[state.view].title.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "") || "attention";
    if (state.tab === "head") return { canvas: el.headCanvas, name: slug + "-layer" + (state.layer + 1) + ".png" };
    if (state.detail) {
      return { canvas: el.detailCanvas, name: slug + "-layer" + (state.detail.layer + 1) + "-head" + (state.detail.head + 1) + ".png" };
    }
    return { canvas: el.modelCanvas, name: slug + "-all-heads.png" };
  }
  /** Save the current canvas as a PNG: a data: URL in an <a download>, no network involved. */
  function exportPng() {
    var current = currentCanvas();
    var link = document.createElement("a");
    link.href = current.canvas.toDataURL("image/png");
    link.download = current.name;
    document.body.appendChild(link);
    link.click();
    link.remove();
  }
  el.exportButton.addEventListener("click", exportPng);

  // -- start -------------------------------------------------------------------------------------
  $("threshold").textContent = String(LINE_THRESHOLD);
  fillSelect(el.viewSelect, views.map(function (view) { return view.title; }));
  el.viewPicker.hidden = views.length < 2;
  state.heads = new Array(views[0].numHeads).fill(true);
  buildHeadToggles();
  selectView(0);
  selectTab("head");

  /** Page coordinates of drawn things, for scripted use (tests, demos). */
  function pagePoint(canvas, x, y) {
    var box = canvas.getBoundingClientRect();
    return { x: box.left + x, y: box.top + y };
  }
  window.attnlabExplorer = {
    state: state,
    views: views,
    /** Where token `index` of side "query" or "key" is drawn in the head view. */
    tokenCenter: function (side, index) {
      var layout = headLayout(state.view);
      return side === "query"
        ? pagePoint(el.headCanvas, layout.xQueryText - 20, queryY(layout, index))
        : pagePoint(el.headCanvas, layout.xKeyText + 20, keyY(layout, index));
    },
    /** Where the lines of token `index` of side "query" or "key" start or end in the head view. */
    lineEnd: function (side, index) {
      var layout = headLayout(state.view);
      return side === "query"
        ? pagePoint(el.headCanvas, layout.xQuery, queryY(layout, index))
        : pagePoint(el.headCanvas, layout.xKey, keyY(layout, index));
    },
    /** Where the thumbnail of (layer, head) is drawn in the model view. */
    thumbnailCenter: function (layer, head) {
      var layout = gridLayout(state.view);
      var step = layout.size + GRID.gap;
      return pagePoint(el.modelCanvas, GRID.left + head * step + layout.size / 2, GRID.top + layer * step + layout.size / 2);
    },
    /** Where cell (query, key) is drawn in the enlarged heatmap. */
    cellCenter: function (q, k) {
      var layout = detailLayout();
      return pagePoint(el.detailCanvas, layout.left + (k + 0.5) * layout.cell, layout.top + (q + 0.5) * layout.cell);
    },
  };
  document.documentElement.dataset.ready = "true";
})();
