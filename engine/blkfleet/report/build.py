"""``blkfleet report``: one self-contained HTML file (inline CSS, SVG and one inline script; a Content Security
Policy forbids any request) with the plots of a replay and of the stored runs:

- ``iops_over_time``: IOs per bucket as IOPS, original capture (pale area) vs replay capture (dashed, on top) when
  both are given; the replay's own submission timeline (results JSON, all devices and ops), and its per-IO log
  (``--io-log``), otherwise or as well;
- ``mb_s_over_time``, ``latency_over_time``, ``in_flight_over_time``: per device and op, from the results'
  timeline (100 ms buckets: bytes, mean completion latency, mean IOs in flight);
- ``lateness_over_time``: mean and max lateness per bucket, from the results' timeline (every iteration), or from
  the per-IO log when it is given and its buckets are finer (or the results, by an earlier engine, have none);
- ``latency_cdf``: completion latency against percentile on a nines scale (p50 … p99.99), from the fine
  histograms: per device and op (read, write...) from the results; from the per-IO log (per op) or per device
  (all ops) where results written by an earlier engine hold no histogram per op; the baseline's runs merged per
  op, dashed, over it;
- ``lateness_histogram``: IOs per lateness bucket (submitted later than planned; 1-2-5 µs buckets);
- ``lba_heatmap``, ``lba_heatmap_replay``: the original and the replay capture side by side in time x LBA bins
  (one LBA axis, one time axis and one colour scale for both), colour = IO count (log scale);
- ``trend_<metric>``: each metric per stored run (mean of its samples, whiskers min..max) per host and device,
  with the baseline band mean ± k·sd of the baseline's samples (k = 2 by default).

Every line chart has tooltips and the timelines zoom (interact.py); without the script they are the same static
plots. With both captures, the fidelity figures of ``blkfleet compare`` are included; with a baseline and a
store, the regression verdict table of ``blkfleet regress`` too.
"""

import datetime
import math
from bisect import bisect_left
from html import escape

from .. import __version__
from ..compare.fidelity import compare, load_capture, only_device
from ..numtext import number
from ..regress.significance import mean, variance
from ..regress.verdict import METRICS, evaluate, metric_label, samples, tolerance_text
from ..replayfile.ops import OP_NAMES
from ..results.document import upgrade
from ..results.histogram import LogHistogram
from ..results.iolog import IOLog
from ..workload.html import stats_html
from . import svg
from .interact import SCRIPT

BUCKET_NS = 100_000_000
MAX_BUCKETS = 100_000  # of a timeline plot, whatever the span
HEAT_TIME_BINS = 120
HEAT_LBA_BINS = 64

CSS = """
body{font-family:sans-serif;margin:24px auto;max-width:1100px;color:#222;line-height:1.4}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:13px}table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}
.regression{background:#fbdada;font-weight:bold}.improvement{background:#dff3df}.insufficient{background:#fff4cc}
figure{margin:12px 0}svg.plot{max-width:100%;height:auto;border:1px solid #eee}
.pair{display:flex;gap:8px}.pair figure{flex:1;min-width:0;margin:12px 0}svg.plot[data-zoom]{cursor:crosshair}
.verdict-regression{color:#b00}.verdict-pass,.verdict-improvement{color:#070}.verdict-insufficient{color:#a70}
"""


def _bucket_ns(span_ns):
    """A 1-2-5 bucket width giving at least ~60 buckets over the span, between 1 ms and 100 ms (compare's); wider
    (1-2-5 steps) only where 100 ms would make more than MAX_BUCKETS (a span of days, or a wild time stamp)."""
    for width in (1, 2, 5, 10, 20, 50):
        if span_ns / (width * 1_000_000) <= 60:
            return width * 1_000_000
    width = BUCKET_NS
    while span_ns / width > MAX_BUCKETS:
        width = width * 5 // 2 if str(width)[0] == "2" else width * 2  # 1, 2, 5, 10, ...
    return width


def _ios_per_bucket(times, width):
    if not times:
        return []
    t0 = times[0]
    counts = [0] * ((times[-1] - t0) // width + 1)
    for t in times:
        counts[(t - t0) // width] += 1
    return counts


def timeline_ios(doc):
    """(bucket seconds, IOs submitted per bucket over all devices and ops) of a results document."""
    tl = (upgrade(doc) or {}).get("distributions", {}).get("timeline") or {}
    total = []
    for series in tl.get("series") or []:
        ios = series.get("ios") or []
        if len(ios) > len(total):
            total += [0] * (len(ios) - len(total))
        for i, c in enumerate(ios):
            total[i] += c
    return tl.get("bucket_s") or 0.1, total


class IOLogFigures:
    """What the report shows of a per-IO log (one iteration), read in two passes in bounded memory: the IOs
    submitted per bucket (``width_ns``, chosen from the span as for captures), the mean and max lateness per
    bucket, and a latency histogram per op."""

    def __init__(self, path, iteration=1):
        self.path = path
        last = -1
        with IOLog(path) as log:
            for it, _w, _start, cols in log.blocks():
                if it == iteration and len(cols["submit_ns"]):
                    last = max(last, max(cols["submit_ns"]))
        self.width = _bucket_ns(max(last, 0))
        n = last // self.width + 1 if last >= 0 else 0
        self.counts = [0] * n
        self.late_sum = [0] * n
        self.late_max = [None] * n
        self.latency = LogHistogram()
        self.by_op = {}  # op name -> LogHistogram of its latencies
        with IOLog(path) as log:
            for it, _w, _start, cols in log.blocks():
                if it != iteration:
                    continue
                for t, late in zip(cols["submit_ns"], cols["lateness_ns"]):
                    b = t // self.width
                    self.counts[b] += 1
                    self.late_sum[b] += late
                    if self.late_max[b] is None or late > self.late_max[b]:
                        self.late_max[b] = late
                latencies = cols["latency_ns"].tolist()
                self.latency.add_many(latencies)
                ops = cols["op"].tolist()
                for op in set(ops):
                    name = OP_NAMES[op] if op < len(OP_NAMES) else str(op)
                    self.by_op.setdefault(name, LogHistogram()).add_many(
                        [v for v, o in zip(latencies, ops) if o == op])


def iops_plot(orig=None, replay=None, doc=None, acc=1.0, iolog=None):
    series = []
    caps = [c for c in (orig, replay) if c is not None and c.times]
    width = _bucket_ns(max(c.times[-1] - c.times[0] for c in caps)) if caps else BUCKET_NS
    w_s = width / 1e9
    if orig is not None:
        counts = _ios_per_bucket(orig.times, width)
        series.append((f"original capture ({orig.device})" + (f", time / {acc:g}" if acc != 1 else ""),
                       [i * w_s / acc for i in range(len(counts))], [c / w_s * acc for c in counts]))
    if replay is not None:
        counts = _ios_per_bucket(replay.times, width)
        series.append((f"replay capture ({replay.device})", [i * w_s for i in range(len(counts))],
                       [c / w_s for c in counts]))
    bucket, ios = timeline_ios(doc) if doc else (0.1, [])
    if ios:
        series.append(("replay submissions (results)", [i * bucket for i in range(len(ios))],
                       [c / bucket for c in ios]))
    if iolog is not None and iolog.counts:
        b_s = iolog.width / 1e9
        series.append(("replay submissions (per-IO log, iteration 1)", [i * b_s for i in range(len(iolog.counts))],
                       [c / b_s for c in iolog.counts]))
    title = "IOPS over time: original vs replay" if orig is not None and replay is not None else "IOPS over time"
    where = (f"{width / 1e6:g} ms buckets" + (f", results: {bucket * 1000:g} ms" if ios else "") if caps
             else f"{bucket * 1000:g} ms buckets")
    # where the lines coincide (a faithful replay), all still show: the original a pale area, the results'
    # timeline a broad pale line, the replay capture dashed and the per-IO log dotted over them
    styles = ([("area", 0)] if orig is not None else []) + ([("dash", 1)] if replay is not None else [])
    styles += [("wide", 2)] if ios else []
    styles += [("dot", 3)] if len(series) > len(styles) else []
    return svg.line_chart("iops_over_time", title, series, "time since first IO (s)", f"IOPS ({where})", ymin=0,
                          styles=styles, zoom=True)


OP_COLOUR = {name: i for i, name in enumerate(("read", "write", "discard", "flush", "write_zeroes"))}


def _timeline(doc):
    tl = (upgrade(doc) or {}).get("distributions", {}).get("timeline") or {}
    return tl.get("bucket_s") or 0.1, tl.get("series") or []


def timeline_plot(doc, plot_id, title, ylabel, value, field):
    """One series per device and op of the results' timeline: ``value(series, i, bucket_s)`` at bucket i;
    ``field``: the timeline member it needs (absent from version 1 documents)."""
    bucket, tl = _timeline(doc)
    tl = [t for t in tl if t.get(field) is not None and t.get("op") != "*"]
    if not tl:
        return svg.empty(plot_id, title, f"no per-op {field} timeline in the results (results version 2 has it)")
    several = len({t["device"] for t in tl}) > 1
    series, styles = [], []
    for t in tl:
        values = t[field]
        series.append((f"{t['device']} {t['op']}" if several else t["op"],
                       [i * bucket for i in range(len(values))], [value(t, i, bucket) for i in range(len(values))]))
        styles.append(("line", len(series) - 1 if several else OP_COLOUR.get(t["op"], 5)))
    return svg.line_chart(plot_id, f"{title} ({bucket * 1000:g} ms buckets, results)", series,
                          "time since the replay's start (s)", ylabel, ymin=0, styles=styles, zoom=True)


def mb_s_plot(doc):
    return timeline_plot(doc, "mb_s_over_time", "MB/s over time per op", "MB/s (10^6 bytes per second)",
                         lambda t, i, b: t["bytes"][i] / b / 1e6, "bytes")


def latency_time_plot(doc):
    return timeline_plot(doc, "latency_over_time", "Mean completion latency over time per op", "latency (µs)",
                         lambda t, i, b: t["latency_mean_us"][i], "latency_mean_us")


def in_flight_plot(doc):
    return timeline_plot(doc, "in_flight_over_time", "IOs in flight over time per op", "IOs in flight (mean)",
                         lambda t, i, b: t["in_flight"][i], "in_flight")


def timeline_lateness(doc):
    """(bucket seconds, mean lateness µs, max lateness µs per bucket) over every series of the results'
    timeline (None where no IO was submitted), or None when the results have no lateness timeline."""
    bucket, tl = _timeline(doc)
    tl = [t for t in tl if t.get("lateness_mean_us") is not None and t.get("lateness_max_us") is not None]
    if not tl:
        return None
    n = max(len(t["ios"]) for t in tl)
    ios, total, peak = [0] * n, [0.0] * n, [None] * n
    for t in tl:
        for i, (c, m, top) in enumerate(zip(t["ios"], t["lateness_mean_us"], t["lateness_max_us"])):
            if c and m is not None:
                ios[i] += c
                total[i] += m * c
                peak[i] = top if peak[i] is None or top > peak[i] else peak[i]
    return bucket, [s / c if c else None for s, c in zip(total, ios)], peak


def lateness_time_plot(doc=None, iolog=None):
    """From the results' timeline (every iteration, all devices and ops, 100 ms buckets); from the per-IO log
    (iteration 1) when it is given and its buckets are finer, or the results have no lateness timeline."""
    results = timeline_lateness(doc) if doc else None
    if iolog is not None and iolog.counts and (results is None or iolog.width < results[0] * 1e9):
        b_s = iolog.width / 1e9
        xs = [i * b_s for i in range(len(iolog.counts))]
        mean = [s / n / 1000 if n else None for s, n in zip(iolog.late_sum, iolog.counts)]
        peak = [m / 1000 if m is not None else None for m in iolog.late_max]
        source, start = "per-IO log, iteration 1", "the iteration's start"
    elif results is not None:
        b_s, mean, peak = results
        xs = [i * b_s for i in range(len(mean))]
        source, start = "results", "the replay's start"
    else:
        return svg.empty("lateness_over_time", "Lateness over time",
                         "no lateness timeline in the results (a replay by an earlier engine): give its per-IO "
                         "log (blkfleet replay --io-log FILE; report --io-log FILE)")
    return svg.line_chart("lateness_over_time", f"Lateness over time: submitted after the planned time ({source})",
                          [("max", xs, peak), ("mean", xs, mean)], f"time since {start} (s)",
                          f"lateness (µs, {b_s * 1000:g} ms buckets)", styles=[("area", 1), ("line", 0)], zoom=True)


def _histogram(doc, which):
    """(upper bounds µs, counts) of a results histogram (either version), empty buckets left out; the last
    (unbounded) bucket of a version 1 histogram at its lower bound."""
    h = (upgrade(doc) or {}).get("distributions", {}).get(which) or {}
    rows = [(hi if hi is not None else lo, c) for lo, hi, c in zip(h.get("lower") or [], h.get("upper") or [],
                                                                     h.get("counts") or [])]
    return [r[0] for r in rows if r[0] is not None], [r[1] for r in rows if r[0] is not None]


NINES = ((50, "p50"), (90, "p90"), (99, "p99"), (99.9, "p99.9"), (99.99, "p99.99"))
CURVE_POINTS = 160


def _nines(p):
    """The percentile axis: p50 at 0.3, p90 at 1, p99 at 2, p99.9 at 3, ..."""
    return -math.log10(1 - p / 100)


def _rows(h):
    """(lower, upper, count) of a results histogram (either version), µs; an open end takes the other bound."""
    return [(lo if lo is not None else hi, hi if hi is not None else lo, c)
            for lo, hi, c in zip(h.get("lower") or [], h.get("upper") or [], h.get("counts") or [])
            if c and (lo is not None or hi is not None)]


def _merged(histograms):
    """The rows of several histograms of one scheme added bucket by bucket."""
    counts = {}
    for h in histograms:
        for lo, hi, c in _rows(h):
            counts[(lo, hi)] = counts.get((lo, hi), 0) + c
    return [(lo, hi, c) for (lo, hi), c in sorted(counts.items())]


def percentile_curve(rows):
    """(nines, latency) points from p50 up to the highest percentile the count resolves (p99.99 needs 10,000
    IOs), interpolated within each bucket."""
    total = sum(c for _lo, _hi, c in rows)
    if not total:
        return [], []
    top = min(math.log10(total), _nines(NINES[-1][0]))
    start = _nines(NINES[0][0])
    if top <= start:
        return [], []
    xs, ys = [], []
    i, before = 0, 0
    for k in range(CURVE_POINTS + 1):
        x = start + (top - start) * k / CURVE_POINTS
        rank = (1 - 10 ** -x) * total
        while i < len(rows) - 1 and before + rows[i][2] < rank:
            before += rows[i][2]
            i += 1
        lo, hi, c = rows[i]
        xs.append(x)
        ys.append(lo + (hi - lo) * min(max((rank - before) / c, 0.0), 1.0))
    return xs, ys


def _device_histograms(doc):
    """{device: latency histogram} of a results document (version 1: its total, for its only device)."""
    doc = upgrade(doc) or {}
    dist = doc.get("distributions") or {}
    per = {d: (v or {}).get("latency") for d, v in (dist.get("devices") or {}).items()}
    if not per and len(doc.get("devices") or {}) == 1:
        per = {next(iter(doc["devices"])): dist.get("latency")}
    return {d: h for d, h in per.items() if h}


def _op_histograms(doc):
    """{device: {op: latency histogram}} of a results document; {} where it has no histograms per op (written
    by an earlier engine)."""
    devices = ((upgrade(doc) or {}).get("distributions") or {}).get("devices") or {}
    out = {}
    for device, d in devices.items():
        per = {op: (h or {}).get("latency") for op, h in ((d or {}).get("by_op") or {}).items()}
        per = {op: h for op, h in per.items() if h and h.get("count")}
        if per:
            out[device] = per
    return out


def _op_order(op):
    return OP_COLOUR.get(op, 9), op


def latency_cdf_plot(doc, iolog=None, baseline_docs=(), baseline_name=None):
    """Per device and op from the results' histograms (every iteration); from the per-IO log (iteration 1) by op
    when the results have none per op; else per device, all ops. The baseline's runs are merged per device and
    op (all ops where they have none per op), dashed in the colour of the replay's line."""
    series, styles = [], []
    by_op = _op_histograms(doc) if doc else {}
    devices = sorted(_device_histograms(doc)) if doc else []
    several = len(devices) > 1
    pairs = {}  # several devices: a colour per (device, op), the baseline's dashed line in its replay's

    def colour(device, op):
        return pairs.setdefault((device, op), len(pairs)) if several else OP_COLOUR.get(op, 5)

    if by_op:
        source = "results, by op"
        for device in sorted(by_op):
            for op, h in sorted(by_op[device].items(), key=lambda kv: _op_order(kv[0])):
                series.append((f"replay {device} {op}" if several else f"replay {op}", *percentile_curve(_rows(h))))
                styles.append(("line", colour(device, op)))
    elif iolog is not None and iolog.latency.count:
        source = "per-IO log, iteration 1, by op"
        for name, h in sorted(iolog.by_op.items(), key=lambda kv: _op_order(kv[0])):
            rows = [(lo / 1000, hi / 1000, c) for lo, hi, c in h.buckets()]
            series.append((f"replay {name}", *percentile_curve(rows)))
            styles.append(("line", OP_COLOUR.get(name, 5)))
    else:
        source = "results: all ops per device"
        for i, (device, h) in enumerate(sorted(_device_histograms(doc).items())):
            series.append((f"replay {device}", *percentile_curve(_rows(h))))
            styles.append(("line", i))
    base_ops = [_op_histograms(d) for d in baseline_docs]
    for device in devices:
        per_op = [b[device] for b in base_ops if device in b]
        if per_op:
            for op in sorted({op for ops in per_op for op in ops}, key=_op_order):
                hists = [ops[op] for ops in per_op if op in ops]
                series.append((f"baseline {baseline_name} {device} {op} ({len(hists)} runs)",
                               *percentile_curve(_merged(hists))))
                styles.append(("dash", colour(device, op)))
            continue
        hists = [h for d in baseline_docs for dev, h in _device_histograms(d).items() if dev == device]
        if hists:
            series.append((f"baseline {baseline_name} {device} ({len(hists)} runs, all ops)",
                           *percentile_curve(_merged(hists))))
            styles.append(("dash", 6 + devices.index(device)))
    kept = [(s, st) for s, st in zip(series, styles) if s[1]]
    if not kept:
        return svg.empty("latency_cdf", "Latency by percentile", "no latency histogram in the results")
    return svg.line_chart("latency_cdf", f"Latency by percentile ({source})", [k[0] for k in kept],
                          "percentile (nines scale)", "completion latency (µs, log scale)", ylog=True,
                          styles=[k[1] for k in kept], xticks=[(_nines(p), label) for p, label in NINES])


LATENESS_BOUNDS_US = tuple(m * 10 ** e for e in range(0, 8) for m in (1, 2, 5))  # 1 µs .. 50 s


def lateness_plot(doc):
    uppers, counts = _histogram(doc, "lateness")
    if not sum(counts):
        return svg.empty("lateness_histogram", "Lateness histogram", "no lateness histogram in the results")
    bins = [0] * (len(LATENESS_BOUNDS_US) + 2)  # early (< 0), <= each bound, beyond the last
    for x, c in zip(uppers, counts):
        bins[0 if x <= 0 else 1 + bisect_left(LATENESS_BOUNDS_US, x)] += c
    labels = (["early"] + [f"≤{svg.fmt_num(b)}" for b in LATENESS_BOUNDS_US]
              + [f">{svg.fmt_num(LATENESS_BOUNDS_US[-1])}"])
    first = next(i for i, c in enumerate(bins) if c)
    last = max(i for i, c in enumerate(bins) if c)
    return svg.bar_chart("lateness_histogram", "Lateness histogram (results)", labels[first:last + 1],
                         bins[first:last + 1], "lateness: submitted after the planned time (µs, 1-2-5 buckets)", "IOs",
                         svg.PALETTE[4])


def _lba_range(caps):
    """(first, end) sector over the captures, so that their maps share one LBA axis."""
    s0 = min(min(c.sectors) for c in caps)
    s1 = max(s + max(n // 512, 1) for c in caps for s, n in zip(c.sectors, c.nbytes))
    return s0, max(s1, s0 + 1)


def _lba_grid(cap, span_t, lba_range):
    """IO counts of one capture in HEAT_LBA_BINS x HEAT_TIME_BINS cells of ``span_t`` ns x ``lba_range``."""
    t0 = cap.times[0]
    s0, s1 = lba_range
    grid = [[0] * HEAT_TIME_BINS for _ in range(HEAT_LBA_BINS)]
    for t, s in zip(cap.times, cap.sectors):
        c = min((t - t0) * HEAT_TIME_BINS // span_t, HEAT_TIME_BINS - 1)
        r = min((s - s0) * HEAT_LBA_BINS // (s1 - s0), HEAT_LBA_BINS - 1)
        grid[r][c] += 1
    return grid


LBA_MAPS = (("lba_heatmap", "original capture", "no original capture given (--original)"),
            ("lba_heatmap_replay", "replay capture", "no capture of the replay given (--replay-capture)"))


def lba_heatmaps(orig, replay):
    """The original's and the replay's LBA maps on one LBA axis, one time axis (the longer capture's) and one
    colour scale, so that a cell of either map means the same IO count over the same extent."""
    caps = [c for c in (orig, replay) if c is not None and c.times]
    lba_range = _lba_range(caps) if caps else (0, 1)
    span_t = max([c.times[-1] - c.times[0] for c in caps] + [1])
    grids = [_lba_grid(c, span_t, lba_range) if c is not None and c.times else None for c in (orig, replay)]
    peak = max([v for grid in grids if grid for row in grid for v in row] + [0])
    return tuple(svg.empty(plot_id, f"LBA over time, {what}", missing) if grid is None else
                 svg.heatmap(plot_id, f"LBA over time, {what} ({cap.device})", grid, (0.0, span_t / 1e9),
                             (lba_range[0] / 2048, lba_range[1] / 2048), "time since first IO (s)",
                             "LBA (MiB from device start)", peak=peak)
                 for cap, grid, (plot_id, what, missing) in zip((orig, replay), grids, LBA_MAPS))


def trend_plots(runs, baseline_rows=(), k=2.0):
    """``runs``: (label, run id or None, host, device, doc) in time order."""
    plots = []
    groups = {}
    for entry in runs:
        groups.setdefault((entry[2], entry[3]), []).append(entry)
    base_ids = {(r["run_id"], r["device"]) for r in baseline_rows}
    for name, metric in METRICS.items():
        series, bands, whiskers = [], [], []
        for gi, ((host, device), entries) in enumerate(sorted(groups.items())):
            xs, ys, base_samples = [], [], []
            for i, (_label, run_id, _h, _d, doc) in enumerate(entries):
                values, _src = samples(doc, device, metric)
                if not values:
                    continue
                xs.append(i + 1)
                ys.append(mean(values))
                if len(values) > 1:
                    whiskers.append((gi, i + 1, min(values), max(values)))
                if (run_id, device) in base_ids:
                    base_samples += values
            series.append((f"{host} {device}", xs, ys))
            if len(base_samples) >= 2:
                m, sd = mean(base_samples), math.sqrt(variance(base_samples))
                bands.append((f"baseline {host} {device}: mean ± {k:g} sd", m - k * sd, m + k * sd, gi))
        unit = "" if metric.unit in metric.label else f" ({metric.unit})"
        plots.append(svg.line_chart(f"trend_{name}", f"Trend: {metric.label} per run", series,
                                    "run (in time order)", f"{metric.label}{unit}", bands=bands, markers=True,
                                    whiskers=whiskers, xfmt=lambda v: str(int(v)) if v == int(v) else ""))
    return plots


_LEFT = ' class="l"'


def _table(head, rows, classes=None):
    out = ["<table><tr>" + "".join(f'<th{_LEFT if i < 2 else ""}>{escape(h)}</th>' for i, h in enumerate(head))
           + "</tr>"]
    for j, row in enumerate(rows):
        cls = f' class="{classes[j]}"' if classes and classes[j] else ""
        out.append(f"<tr{cls}>" + "".join(f'<td{_LEFT if i < 2 else ""}>{escape(str(c))}</td>'
                                          for i, c in enumerate(row)) + "</tr>")
    return "".join(out) + "</table>"


def _n(v, digits=1):
    """A figure of the report's tables (regress's Markdown tables write them the same way)."""
    return number(v, digits, missing="–", grouped=True)


def fidelity_html(fid):
    issue, inter = fid["issue_time_error_us"] or {}, fid["inter_arrival_error_us"] or {}
    rows = [
        ("original IOs", "", fid["original"]["ios"]), ("replay IOs", "", fid["replay"]["ios"]),
        ("matched IOs", "", fid["matched"]), ("unmatched original", "", fid["unmatched_original"]),
        ("unmatched replay", "", fid["unmatched_replay"]), ("expected missing", "", fid["expected_missing"]),
        ("issue-time error p50", "µs", _n(issue.get("p50"))), ("issue-time error p90", "µs", _n(issue.get("p90"))),
        ("issue-time error p99", "µs", _n(issue.get("p99"))), ("issue-time error max", "µs", _n(issue.get("max"))),
        ("inter-arrival error p50", "µs", _n(inter.get("p50"))),
        ("inter-arrival error p99", "µs", _n(inter.get("p99"))),
        ("IOPS error (MAPE, 100 ms buckets)", "%", _n(fid["iops"]["mape_pct"], 2)),
        ("span ratio", "", _n(fid["span_ratio"], 4)),
    ]
    return ('<h2 id="fidelity">Fidelity (replay capture vs original capture)</h2>'
            f'<p class="meta">acc factor {fid["acc_factor"]:g}'
            + (", writes replayed as reads" if fid["reads_for_writes"] else "") + "</p>"
            + _table(("figure", "unit", "value"), rows))


def verdict_html(result):
    """The verdict table, with the same columns as regress's Markdown (centre, units, absolute floors)."""
    centre = "median" if result["test"] == "mann-whitney" else "mean"
    rows, classes = [], []
    for g in result["groups"]:
        for m in g["metrics"]:
            b, c = m["baseline"], m["candidate"]
            rows.append((g["host"], g["device"], metric_label(m),
                         f"{_n(b.get(centre))} ± {_n(b['sd'])} ({b['n']})",
                         f"{_n(c.get(centre))} ± {_n(c['sd'])} ({c['n']})",
                         "–" if m["change_pct"] is None else f"{m['change_pct']:+.1f} %",
                         tolerance_text(m), "–" if m["p"] is None else f"{m['p']:.2g}", m["verdict"]))
            classes.append(m["verdict"] if m["verdict"] != "pass" else "")
    head = ("host", "device", "metric", f"baseline {centre} ± sd (n)", f"candidate {centre} ± sd (n)", "change",
            "tolerance", "p", "verdict")
    return (f'<h2 id="verdict">Regression verdict: <span class="verdict-{result["verdict"]}">'
            f'{escape(result["verdict"].upper())}</span></h2><p class="meta">baseline {escape(result["baseline"])}, '
            f'{escape(result["test"])} test, alpha {result["alpha"]:g}, exit code {result["exit_code"]}</p>'
            + _table(head, rows, classes)
            + "".join(f'<p class="meta">warning: {escape(w)}</p>' for w in result["warnings"]))


def summary_html(doc, label):
    if not doc:
        return ""
    rows = []
    for name, d in sorted(doc.get("devices", {}).items()):
        lat, late = d.get("latency_us") or {}, d.get("lateness_us") or {}
        rows.append((name, d.get("target", ""), d.get("ios"), _n(d.get("iops")), _n(d.get("mb_s"), 2),
                     _n(lat.get("p50")), _n(lat.get("p99")), _n(late.get("p99")), d.get("late_ios"),
                     (d.get("errors") or {}).get("count")))
    head = ("device", "target", "IOs", "IOPS", "MB/s", "latency p50 µs", "latency p99 µs", "lateness p99 µs",
            "late IOs", "errors")
    return (f"<h2 id=\"run\">Replay: {escape(label)}</h2><p class=\"meta\">host {escape(str(doc.get('host')))}, "
            f"started {escape(str(doc.get('started')))}, ioengine {escape(str(doc.get('ioengine')))} "
            f"{escape(str(doc.get('engine_version')))}, mode {escape(str(doc.get('mode')))}, x"
            f"{doc.get('acc_factor')}, {len(doc.get('per_iteration', []))} iterations</p>" + _table(head, rows))


CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def render(focus=None, focus_label="", runs=(), baseline_rows=(), baseline_name=None, verdict=None,
           original_dir=None, replay_dir=None, original_device=None, replay_device=None, band_k=2.0, io_log=None,
           stats=None, baseline_docs=()):
    """The HTML text of the report (``stats``: a ``blkfleet stats`` document for the workload section;
    ``baseline_docs``: the baseline runs' documents, for the latency percentiles)."""
    focus = upgrade(focus)
    iolog = IOLogFigures(io_log) if io_log else None
    orig = replay = None
    fid = None
    acc = float((focus or {}).get("acc_factor") or 1.0)
    reads_for_writes = bool((focus or {}).get("writes_replayed_as_reads"))
    if original_dir:
        orig = load_capture(original_dir, original_device or only_device(original_dir, "--original-device"))
    if replay_dir:
        replay = load_capture(replay_dir, replay_device or only_device(replay_dir, "--replay-device"))
    if orig is not None and replay is not None:
        fid = compare(orig, replay, acc, reads_for_writes)
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        "<title>blkfleet report</title><style>" + CSS + "</style></head><body>",
        "<h1>blkfleet report</h1>",
        f'<p class="meta">generated {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")} '
        f"by blkfleet {escape(__version__)}; {len(runs)} runs"
        + (f", baseline {escape(baseline_name)}" if baseline_name else "")
        + "; hover a plot for its values, scroll on a timeline to zoom, drag to pan, double-click to reset</p>",
    ]
    if verdict is not None:
        parts.append(verdict_html(verdict))
    parts.append(summary_html(focus, focus_label))
    if fid is not None:
        parts.append(fidelity_html(fid))
    if stats is not None:
        parts.append(stats_html(stats))
    parts.append('<h2 id="plots">Replay plots</h2>')
    plots = [iops_plot(orig, replay, focus, acc, iolog), mb_s_plot(focus), latency_time_plot(focus),
             in_flight_plot(focus), lateness_time_plot(focus, iolog),
             latency_cdf_plot(focus, iolog, baseline_docs, baseline_name), lateness_plot(focus)]
    parts += [f"<figure>{p}</figure>" for p in plots]
    parts.append('<div class="pair">' + "".join(f"<figure>{p}</figure>" for p in lba_heatmaps(orig, replay))
                 + "</div>")
    parts.append(f'<h2 id="trends">Trends across runs (baseline band: mean ± {band_k:g} sd)</h2>')
    if runs:
        parts.append(_table(("#", "run", "host", "device", "started"),
                            [(i + 1, r[0], r[2], r[3], r[4].get("started", "")) for i, r in enumerate(runs)]))
    parts += [f"<figure>{p}</figure>" for p in trend_plots(runs, baseline_rows, band_k)]
    parts.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "".join(parts)


def from_store(store, baseline=None, host=None, device=None, band_k=2.0):
    """(runs, baseline rows, verdict, baseline documents) from a results store, for ``render``."""
    rows = store.rows(host=host, device=device)
    docs = {}
    runs = []
    for r in rows:
        if r["run_id"] not in docs:
            docs[r["run_id"]] = store.get(r["run_id"]).doc
        runs.append((f"run {r['run_id']}", r["run_id"], r["host"], r["device"], docs[r["run_id"]]))
    baseline_rows, verdict, baseline_docs = [], None, []
    if baseline:
        baseline_rows = store.baseline(baseline)
        verdict = evaluate(store, baseline, host=host, device=device)
        ids = sorted({r["run_id"] for r in baseline_rows})
        baseline_docs = [docs[i] if i in docs else store.get(i).doc for i in ids]
    return runs, baseline_rows, verdict, baseline_docs
