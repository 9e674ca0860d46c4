"""Small SVG charts written as text: line charts (linear or log x), bar charts and heat maps, with axes, ticks,
labels and legends. No external fonts, scripts or styles: each chart is one self-contained ``<svg>`` element whose
``id`` and ``data-plot`` attribute name it."""

import math
from html import escape

from ..numtext import number

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
WIDTH, HEIGHT = 760, 380
LEFT, RIGHT, TOP, BOTTOM = 78, 24, 40, 58


def _f(v):
    return f"{v:.2f}".rstrip("0").rstrip(".")


def fmt_num(v):
    """Short tick label: 1.5k, 2M, 0.25..."""
    return number(v, short=True)


def nice_ticks(lo, hi, count=6):
    """Round tick values covering [lo, hi]: (ticks, lo', hi')."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    end = math.ceil(hi / step) * step
    ticks = []
    v = start
    while v <= end + step / 2:
        ticks.append(round(v, 12))
        v += step
    return ticks, start, end


def log_ticks(lo, hi):
    lo_e = math.floor(math.log10(lo))
    hi_e = math.ceil(math.log10(hi))
    if hi_e == lo_e:
        hi_e += 1
    return [10.0 ** e for e in range(lo_e, hi_e + 1)], 10.0 ** lo_e, 10.0 ** hi_e


class Frame:
    """The plot area and its scales."""

    def __init__(self, xlo, xhi, ylo, yhi, xlog=False, width=WIDTH, height=HEIGHT, ylog=False):
        self.xlog, self.ylog = xlog, ylog
        self.width, self.height = width, height
        if xlog:
            self.xticks, self.xlo, self.xhi = log_ticks(max(xlo, 1e-12), max(xhi, xlo * 10, 1e-11))
        else:
            self.xticks, self.xlo, self.xhi = nice_ticks(xlo, xhi, 7)
        if ylog:
            self.yticks, self.ylo, self.yhi = log_ticks(max(ylo, 1e-12), max(yhi, ylo * 10, 1e-11))
        else:
            self.yticks, self.ylo, self.yhi = nice_ticks(ylo, yhi, 6)
        self.x0, self.x1 = LEFT, width - RIGHT
        self.y0, self.y1 = height - BOTTOM, TOP

    def x(self, v):
        if self.xlog:
            v = max(v, self.xlo)
            t = (math.log10(v) - math.log10(self.xlo)) / (math.log10(self.xhi) - math.log10(self.xlo))
        else:
            t = (v - self.xlo) / (self.xhi - self.xlo)
        return self.x0 + t * (self.x1 - self.x0)

    def y(self, v):
        if self.ylog:
            v = max(v, self.ylo)
            t = (math.log10(v) - math.log10(self.ylo)) / (math.log10(self.yhi) - math.log10(self.ylo))
        else:
            t = (v - self.ylo) / (self.yhi - self.ylo)
        return self.y0 - t * (self.y0 - self.y1)

    def attributes(self):
        """The scales, for the report's script (tooltips read values back from the points, zoom redraws the x
        ticks)."""
        return (f' data-frame="{self.x0} {self.x1} {self.y0} {self.y1}" data-x="{self.xlo!r} {self.xhi!r} '
                f'{int(self.xlog)}" data-y="{self.ylo!r} {self.yhi!r} {int(self.ylog)}"')

    def axes(self, xlabel, ylabel, xfmt=fmt_num, yfmt=fmt_num):
        out = ['<g class="grid" stroke="#e3e3e3" stroke-width="1">']
        for t in self.yticks:
            out.append(f'<line x1="{self.x0}" x2="{self.x1}" y1="{_f(self.y(t))}" y2="{_f(self.y(t))}"/>')
        for t in self.xticks:
            out.append(f'<line class="gx" x1="{_f(self.x(t))}" x2="{_f(self.x(t))}" y1="{self.y1}" y2="{self.y0}"/>')
        out.append("</g>")
        out.append(f'<g class="axes" stroke="#333" stroke-width="1.2"><line x1="{self.x0}" x2="{self.x1}" '
                   f'y1="{self.y0}" y2="{self.y0}"/><line x1="{self.x0}" x2="{self.x0}" y1="{self.y0}" '
                   f'y2="{self.y1}"/></g>')
        out.append('<g class="ticks xticks" font-size="11" fill="#333">')
        for t in self.xticks:
            out.append(f'<text x="{_f(self.x(t))}" y="{self.y0 + 16}" text-anchor="middle">{escape(xfmt(t))}</text>')
        out.append('</g><g class="ticks yticks" font-size="11" fill="#333">')
        for t in self.yticks:
            out.append(f'<text x="{self.x0 - 6}" y="{_f(self.y(t) + 4)}" text-anchor="end">{escape(yfmt(t))}</text>')
        out.append("</g>")
        out.append(f'<text class="xlabel" x="{(self.x0 + self.x1) / 2}" y="{self.height - 14}" font-size="13" '
                   f'text-anchor="middle">{escape(xlabel)}</text>')
        out.append(f'<text class="ylabel" transform="translate(16,{(self.y0 + self.y1) / 2}) rotate(-90)" '
                   f'font-size="13" text-anchor="middle">{escape(ylabel)}</text>')
        return "".join(out)


def _svg(plot_id, title, body, width=WIDTH, height=HEIGHT, extra=""):
    """``extra``: more attributes of the ``<svg>`` element."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" id="plot-{escape(plot_id)}" data-plot="{escape(plot_id)}" '
            f'class="plot" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(title)}" font-family="sans-serif"{extra}><title>{escape(title)}</title>'
            f'<rect width="{width}" height="{height}" fill="#fff"/>'
            f'<text x="{width / 2}" y="22" font-size="15" font-weight="bold" text-anchor="middle">'
            f"{escape(title)}</text>"
            f"{body}</svg>")


def empty(plot_id, title, message):
    body = (f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" font-size="14" fill="#777" text-anchor="middle">'
            f"{escape(message)}</text>")
    return _svg(plot_id, title, body, extra=' data-empty="true"')


def _legend(entries, x, y):
    """``entries``: (name, colour, kind): a series ("line", "dash" or "area") drawn as a short line of its style,
    a band ("band") as a pale dashed box, so that a series and its band never look alike."""
    out = ['<g class="legend" font-size="12">']
    for i, (name, colour, kind) in enumerate(entries):
        yy = y + i * 16
        if kind == "band":
            mark = (f'<rect x="{x}" y="{yy - 10}" width="22" height="12" fill="{colour}" fill-opacity="0.15" '
                    f'stroke="{colour}" stroke-dasharray="3 2"/>')
        elif kind == "area":
            mark = (f'<rect x="{x}" y="{yy - 6}" width="22" height="7" fill="{colour}" fill-opacity="0.25"/>'
                    f'<line x1="{x}" x2="{x + 22}" y1="{yy - 6}" y2="{yy - 6}" stroke="{colour}" stroke-width="2"/>')
        else:
            width, extra = _STROKE[kind]
            mark = (f'<line x1="{x}" x2="{x + 22}" y1="{yy - 4}" y2="{yy - 4}" stroke="{colour}" '
                    f'stroke-width="{max(width, 2.5) if kind == "line" else width}"{extra}/>')
        out.append(f'<g class="legend-entry" data-kind="{kind}">{mark}<text x="{x + 27}" y="{yy}">'
                   f"{escape(name)}</text></g>")
    out.append("</g>")
    return "".join(out)


_DASH = ' stroke-dasharray="7 4"'
_DRAWN = ("area", "wide", "line", "dash", "dot")
_STROKE = {"area": (1.6, ""), "wide": (6, ' stroke-opacity="0.35" stroke-linejoin="round"'), "line": (1.6, ""),
           "dash": (2, _DASH), "dot": (2.2, ' stroke-dasharray="1.5 3" stroke-linecap="round"')}


def line_chart(plot_id, title, series, xlabel, ylabel, xlog=False, bands=(), ymin=None, ymax=None, markers=False,
               xfmt=fmt_num, whiskers=(), ylog=False, styles=None, zoom=False, xticks=None, yfmt=fmt_num):
    """``series``: (name, xs, ys); ``bands``: (name, ylo, yhi, series index for the colour);
    ``whiskers``: (series index, x, ylo, yhi); ``styles``: per series, in the order they are drawn: "area"
    (filled below, pale), "wide" (a broad pale line), "line", "dash", "dot" (dotted, on top), so that series that
    coincide all still show; and a colour index when given as (style, index);
    ``zoom``: the report's script may zoom the x axis (long timelines); ``xticks``: fixed (value, label) ticks."""
    pts = [(x, y) for _n, xs, ys in series for x, y in zip(xs, ys) if y is not None and (not ylog or y > 0)]
    if not pts:
        return empty(plot_id, title, "no data")
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts] + [v for b in bands for v in (b[1], b[2])] + [v for w in whiskers for v in w[2:]]
    lo = min(ys) if ymin is None else ymin
    hi = max(ys) if ymax is None else ymax
    if xlog:
        xs = [x for x in xs if x > 0] or [1.0]
    frame = Frame(min(xs), max(xs), lo, hi, xlog=xlog, ylog=ylog)
    if xticks is not None:
        frame.xticks = [v for v, _label in xticks]
        frame.xlo, frame.xhi = min(frame.xlo, *frame.xticks), max(frame.xhi, *frame.xticks)
        labels = dict(xticks)
        xfmt = labels.get
    body = [frame.axes(xlabel, ylabel, xfmt=xfmt, yfmt=yfmt)]
    styles = [(st, i) if isinstance(st, str) else st for i, st in enumerate(styles or ["line"] * len(series))]
    colours = [PALETTE[ci % len(PALETTE)] for _st, ci in styles]
    clip = f"clip-{escape(plot_id)}"
    body.append(f'<clipPath id="{clip}"><rect x="{frame.x0}" y="{frame.y1 - 4}" width="{frame.x1 - frame.x0}" '
                f'height="{frame.y0 - frame.y1 + 8}"/></clipPath><g clip-path="url(#{clip})"><g class="data">')
    for name, blo, bhi, index in bands:
        c = colours[index]
        body.append(f'<rect class="band" data-band="{escape(name)}" x="{frame.x0}" width="{frame.x1 - frame.x0}" '
                    f'y="{_f(frame.y(bhi))}" height="{_f(max(frame.y(blo) - frame.y(bhi), 0.5))}" fill="{c}" '
                    f'fill-opacity="0.12" stroke="{c}" stroke-opacity="0.6" stroke-dasharray="3 2"/>')
    for index, x, wlo, whi in whiskers:
        body.append(f'<line x1="{_f(frame.x(x))}" x2="{_f(frame.x(x))}" y1="{_f(frame.y(wlo))}" '
                    f'y2="{_f(frame.y(whi))}" stroke="{colours[index]}" stroke-width="1"/>')
    order = sorted(range(len(series)), key=lambda k: _DRAWN.index(styles[k][0]))
    for k in order:
        name, xs_, ys_ = series[k]
        c, style = colours[k], styles[k][0]
        coords = [f"{_f(frame.x(x))},{_f(frame.y(y))}" for x, y in zip(xs_, ys_)
                  if y is not None and (not xlog or x > 0) and (not ylog or y > 0)]
        if not coords:
            continue
        if style == "area":
            first, last = coords[0].split(",")[0], coords[-1].split(",")[0]
            body.append(f'<polygon class="area" fill="{c}" fill-opacity="0.18" stroke="none" points="{first},'
                        f'{frame.y0} {" ".join(coords)} {last},{frame.y0}"/>')
        width, extra = _STROKE[style]
        body.append(f'<polyline class="series" data-series="{escape(name)}" data-style="{style}" fill="none" '
                    f'stroke="{c}" stroke-width="{width}"{extra} vector-effect="non-scaling-stroke" '
                    f'points="{" ".join(coords)}"/>')
        if markers:
            body.append("".join(f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="3" fill="{c}"/>'
                                for p in coords))
    body.append("</g></g>")
    entries = [(n, c, st[0]) for (n, _x, _y), c, st in zip(series, colours, styles)]
    entries += [(b[0], colours[b[3]], "band") for b in bands]
    body.append(_legend(entries, frame.x0 + 10, frame.y1 + 14))
    return _svg(plot_id, title, "".join(body), extra=frame.attributes() + (' data-zoom="x"' if zoom else ""))


def bar_chart(plot_id, title, labels, values, xlabel, ylabel, colour=PALETTE[0]):
    if not values or not any(values):
        return empty(plot_id, title, "no data")
    frame = Frame(0, len(values), 0, max(values))
    frame.xticks = []
    body = [frame.axes(xlabel, ylabel)]
    width = (frame.x1 - frame.x0) / len(values)
    step = max(1, math.ceil(len(values) / 12))
    for i, (label, v) in enumerate(zip(labels, values)):
        x = frame.x0 + i * width
        body.append(f'<rect class="bar" x="{_f(x + 1)}" width="{_f(max(width - 2, 1))}" y="{_f(frame.y(v))}" '
                    f'height="{_f(frame.y0 - frame.y(v))}" fill="{colour}"><title>{escape(label)}: {v}</title></rect>')
        if i % step == 0:
            body.append(f'<text x="{_f(x + width / 2)}" y="{frame.y0 + 16}" font-size="10" text-anchor="middle">'
                        f"{escape(label)}</text>")
    return _svg(plot_id, title, "".join(body))


def colour(t):
    """Viridis-like colour for t in [0, 1]."""
    t = min(max(t, 0.0), 1.0) * (len(VIRIDIS) - 1)
    i = min(int(t), len(VIRIDIS) - 2)
    f = t - i
    r, g, b = (round(a + (c - a) * f) for a, c in zip(VIRIDIS[i], VIRIDIS[i + 1]))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(plot_id, title, grid, xrange, yrange, xlabel, ylabel, yfmt=fmt_num, units=("s", "MiB"), peak=None):
    """``grid[row][col]`` counts, row 0 at the bottom (low y); colour on a log scale of the count up to ``peak``
    (default: the grid's own; give one to put several maps on one scale); each cell's tooltip gives its ranges
    (``units``: of x and y) and count."""
    own = max((v for row in grid for v in row), default=0)
    peak = max(peak or 0, own)
    if not own:
        return empty(plot_id, title, "no data")
    width = WIDTH + 70  # room for the colour bar
    frame = Frame(xrange[0], xrange[1], yrange[0], yrange[1], width=width)
    frame.x1 = width - RIGHT - 70
    frame.xticks = [t for t in frame.xticks if t <= xrange[1]]
    frame.xlo, frame.xhi = xrange
    frame.ylo, frame.yhi = yrange
    frame.yticks = [t for t in nice_ticks(*yrange)[0] if yrange[0] <= t <= yrange[1]]
    rows, cols = len(grid), len(grid[0])
    cw = (frame.x1 - frame.x0) / cols
    ch = (frame.y0 - frame.y1) / rows
    body = [f'<rect x="{frame.x0}" y="{frame.y1}" width="{_f(frame.x1 - frame.x0)}" '
            f'height="{_f(frame.y0 - frame.y1)}" fill="{colour(0)}" fill-opacity="0.08"/>']
    scale = math.log1p(peak)
    cells = []
    xstep, ystep = (xrange[1] - xrange[0]) / cols, (yrange[1] - yrange[0]) / rows
    for r, row in enumerate(grid):
        for c, v in enumerate(row):
            if v:
                tip = (f"{fmt_num(xrange[0] + c * xstep)}–{fmt_num(xrange[0] + (c + 1) * xstep)} {units[0]}, "
                       f"{fmt_num(yrange[0] + r * ystep)}–{fmt_num(yrange[0] + (r + 1) * ystep)} {units[1]}: {v} IOs")
                cells.append(f'<rect x="{_f(frame.x0 + c * cw)}" y="{_f(frame.y0 - (r + 1) * ch)}" '
                             f'width="{_f(cw + 0.3)}" height="{_f(ch + 0.3)}" fill="{colour(math.log1p(v) / scale)}">'
                             f"<title>{escape(tip)}</title></rect>")
    body.append(f'<g class="cells" data-cells="{len(cells)}">' + "".join(cells) + "</g>")
    body.append(frame.axes(xlabel, ylabel, yfmt=yfmt).replace('stroke="#e3e3e3"', 'stroke="none"'))
    bx = frame.x1 + 24
    steps = 40
    bh = (frame.y0 - frame.y1) / steps
    body.append(f'<g class="colourbar" data-peak="{peak}">' + "".join(
        f'<rect x="{bx}" y="{_f(frame.y0 - (i + 1) * bh)}" width="16" height="{_f(bh + 0.3)}" '
        f'fill="{colour(i / (steps - 1))}"/>' for i in range(steps)))
    body.append(f'<text x="{bx + 20}" y="{frame.y0}" font-size="11">1</text>'
                f'<text x="{bx + 20}" y="{frame.y1 + 10}" font-size="11">{escape(fmt_num(peak))}</text>'
                f'<text x="{bx + 8}" y="{frame.y1 - 8}" font-size="11" text-anchor="middle">IOs</text></g>')
    return _svg(plot_id, title, "".join(body), width=width)
