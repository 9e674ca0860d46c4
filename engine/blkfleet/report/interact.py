"""The report's only script, inline (nothing is fetched): tooltips on every line chart and zoom on the long
timelines. The plots are complete without it (a viewer with scripts off sees the same static SVG).

- Tooltip: moving over a line chart shows, for each series, its point nearest in x, read back from the drawn
  points through the chart's scales (``data-frame``, ``data-x``, ``data-y`` of the ``<svg>``).
- Zoom (charts with ``data-zoom="x"``): the wheel zooms the time axis around the pointer, dragging pans,
  a double click goes back to the whole span; the x ticks are redrawn for the range shown.
"""

SCRIPT = r"""
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  function nums(el, name) { return (el.getAttribute(name) || "").split(" ").map(Number); }
  function fmt(v) {
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toPrecision(3) + "M";
    if (a >= 1e4) return (v / 1e3).toPrecision(3) + "k";
    if (a >= 100) return v.toFixed(0);
    return v.toPrecision(3);
  }
  function make(tag, attrs, parent) {
    var el = document.createElementNS(NS, tag);
    for (var k in attrs) el.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(el);
    return el;
  }
  function setup(svg) {
    var f = nums(svg, "data-frame"), xs = nums(svg, "data-x"), ys = nums(svg, "data-y");
    var x0 = f[0], x1 = f[1], y0 = f[2], y1 = f[3];
    function toData(px, lo, hi, a, b, log) {
      var t = (px - a) / (b - a);
      return log ? Math.pow(10, Math.log10(lo) + t * (Math.log10(hi) - Math.log10(lo))) : lo + t * (hi - lo);
    }
    var series = [].map.call(svg.querySelectorAll("polyline.series"), function (line) {
      var pts = line.getAttribute("points").trim().split(/\s+/).map(function (p) {
        var c = p.split(","); return [Number(c[0]), Number(c[1])];
      });
      return {name: line.getAttribute("data-series"), colour: line.getAttribute("stroke"), pts: pts};
    });
    var data = svg.querySelector("g.data"), view = [x0, x1];  // the pixel range (unzoomed) shown
    var zoomable = svg.getAttribute("data-zoom") === "x";
    var tip = make("g", {"class": "tooltip", "pointer-events": "none", visibility: "hidden"}, svg);
    var box = make("rect", {fill: "#fff", "fill-opacity": "0.92", stroke: "#888", rx: "3"}, tip);
    var cursor = make("line", {stroke: "#888", "stroke-dasharray": "2 2", y1: y1, y2: y0}, tip);
    function point(ev) {
      var m = svg.getScreenCTM().inverse(), p = svg.createSVGPoint();
      p.x = ev.clientX; p.y = ev.clientY;
      return p.matrixTransform(m);
    }
    function unzoomed(px) { return view[0] + (px - x0) / (x1 - x0) * (view[1] - view[0]); }
    function zoomed(px) { return x0 + (px - view[0]) / (view[1] - view[0]) * (x1 - x0); }
    function nearest(pts, px) {
      var lo = 0, hi = pts.length - 1;
      while (lo < hi) { var mid = (lo + hi) >> 1; if (pts[mid][0] < px) lo = mid + 1; else hi = mid; }
      if (lo > 0 && Math.abs(pts[lo - 1][0] - px) < Math.abs(pts[lo][0] - px)) lo -= 1;
      return pts[lo];
    }
    function show(ev) {
      var p = point(ev);
      if (p.x < x0 || p.x > x1 || p.y < y1 || p.y > y0) { tip.setAttribute("visibility", "hidden"); return; }
      var ux = unzoomed(p.x);
      while (tip.childNodes.length > 2) tip.removeChild(tip.lastChild);
      var lines = ["x " + fmt(toData(ux, xs[0], xs[1], x0, x1, xs[2] === 1))];
      series.forEach(function (s) {
        if (!s.pts.length) return;
        var q = nearest(s.pts, ux);
        lines.push(s.name + ": " + fmt(toData(q[1], ys[0], ys[1], y0, y1, ys[2] === 1)) + " at x " +
                   fmt(toData(q[0], xs[0], xs[1], x0, x1, xs[2] === 1)));
      });
      var width = 0, tx = p.x + 12, ty = Math.max(p.y - 8 - 15 * lines.length, y1);
      lines.forEach(function (text, i) {
        var t = make("text", {x: tx + 6, y: ty + 15 * (i + 1), "font-size": "11"}, tip);
        t.textContent = text;
        width = Math.max(width, t.getComputedTextLength ? t.getComputedTextLength() : 7 * text.length);
      });
      if (tx + width + 12 > x1) {
        tx = p.x - width - 24;
        [].forEach.call(tip.querySelectorAll("text"), function (t) { t.setAttribute("x", tx + 6); });
      }
      box.setAttribute("x", tx); box.setAttribute("y", ty + 2);
      box.setAttribute("width", width + 12); box.setAttribute("height", 15 * lines.length + 6);
      cursor.setAttribute("x1", p.x); cursor.setAttribute("x2", p.x);
      tip.setAttribute("visibility", "visible");
    }
    svg.addEventListener("mousemove", show);
    svg.addEventListener("mouseleave", function () { tip.setAttribute("visibility", "hidden"); });
    if (!zoomable || !data) return;
    var ticks = svg.querySelector("g.xticks"), grid = svg.querySelector("g.grid");
    function redraw() {
      var k = (x1 - x0) / (view[1] - view[0]);
      data.setAttribute("transform", "translate(" + (x0 - view[0] * k) + ",0) scale(" + k + ",1)");
      var lo = toData(view[0], xs[0], xs[1], x0, x1, false), hi = toData(view[1], xs[0], xs[1], x0, x1, false);
      var raw = (hi - lo) / 6, mag = Math.pow(10, Math.floor(Math.log10(raw)));
      var step = [1, 2, 2.5, 5, 10].map(function (m) { return m * mag; }).filter(function (s) { return s >= raw; })[0];
      while (ticks.firstChild) ticks.removeChild(ticks.firstChild);
      [].forEach.call(grid.querySelectorAll("line.gx"), function (l) {  // the static x grid fits only the whole span
        l.setAttribute("visibility", k > 1.0001 ? "hidden" : "visible");
      });
      for (var v = Math.ceil(lo / step) * step; v <= hi + step / 1e6; v += step) {
        var px = zoomed(x0 + (v - xs[0]) / (xs[1] - xs[0]) * (x1 - x0));
        var t = make("text", {x: px, y: y0 + 16, "text-anchor": "middle"}, ticks);
        t.textContent = fmt(Math.round(v / step) * step);
      }
      svg.setAttribute("data-zoomed", k > 1.0001 ? "true" : "false");
    }
    function clamp() {
      var span = Math.min(Math.max(view[1] - view[0], (x1 - x0) / 1000), x1 - x0);
      var a = Math.min(Math.max(view[0], x0), x1 - span);
      view = [a, a + span];
    }
    svg.addEventListener("wheel", function (ev) {
      var p = point(ev);
      if (p.x < x0 || p.x > x1) return;
      ev.preventDefault();
      var c = unzoomed(p.x), factor = ev.deltaY < 0 ? 0.8 : 1.25;
      view = [c - (c - view[0]) * factor, c + (view[1] - c) * factor];
      clamp(); redraw(); show(ev);
    }, {passive: false});
    var drag = null;
    svg.addEventListener("mousedown", function (ev) { drag = {x: point(ev).x, view: view.slice()}; });
    window.addEventListener("mouseup", function () { drag = null; });
    svg.addEventListener("mousemove", function (ev) {
      if (!drag) return;
      var shift = (point(ev).x - drag.x) / (x1 - x0) * (drag.view[1] - drag.view[0]);
      view = [drag.view[0] - shift, drag.view[1] - shift];
      clamp(); redraw();
    });
    svg.addEventListener("dblclick", function () { view = [x0, x1]; redraw(); });
    svg.zoomTo = function (a, b) { view = [a, b]; clamp(); redraw(); };  // for tests and the console
  }
  [].forEach.call(document.querySelectorAll("svg.plot[data-frame]"), setup);
  document.documentElement.setAttribute("data-interactive", "ready");
})();
"""
