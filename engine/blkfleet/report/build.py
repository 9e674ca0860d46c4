"""``blkfleet report``: one self-contained HTML file (inline CSS and SVG, no script, no network) with the plots of
a replay and of the stored runs:

- ``iops_over_time``: IOs per 100 ms as IOPS, original capture vs replay capture (from their Q events) when both
  are given; the replay's own submission timeline (results JSON, all devices and ops), and its per-IO log
  (``--io-log``), otherwise or as well;
- ``latency_cdf``: cumulative fraction of IOs by completion latency (log µs), from the results' histogram, or
  from the per-IO log when given;
- ``lateness_histogram``: IOs per lateness bucket (submitted later than planned; 1-2-5 µs buckets);
- ``lba_heatmap``: the original capture's Q events in time x LBA bins, colour = IO count (log scale);
- ``trend_<metric>``: each metric per stored run (mean of its samples, whiskers min..max) per host and device,
  with the baseline band mean ± k·sd of the baseline's samples (k = 2 by default).

With both captures, the fidelity figures of ``blkfleet compare`` are included; with a baseline and a store, the
regression verdict table of ``blkfleet regress`` too.
"""

import datetime
import math
from bisect import bisect_left
from html import escape

from .. import __version__
from ..compare.fidelity import compare, load_capture, only_device
from ..numtext import number
from ..regress.significance import mean, variance
from ..regress.verdict import METRICS, evaluate, samples
from ..results.document import upgrade
from ..results.histogram import LogHistogram
from ..results.iolog import IOLog
from ..workload.html import stats_html
from . import svg

BUCKET_NS = 100_000_000
HEAT_TIME_BINS = 120
HEAT_LBA_BINS = 64

CSS = """
body{font-family:sans-serif;margin:24px auto;max-width:1100px;color:#222;line-height:1.4}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:13px}table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}
.regression{background:#fbdada;font-weight:bold}.improvement{background:#dff3df}.insufficient{background:#fff4cc}
figure{margin:12px 0}svg.plot{max-width:100%;height:auto;border:1px solid #eee}
.verdict-regression{color:#b00}.verdict-pass,.verdict-improvement{color:#070}.verdict-insufficient{color:#a70}
"""


def _bucket_ns(span_ns):
    """A 1-2-5 bucket width giving at least ~60 buckets over the span, between 1 ms and 100 ms (compare's)."""
    for width in (1, 2, 5, 10, 20, 50):
        if span_ns / (width * 1_000_000) <= 60:
            return width * 1_000_000
    return BUCKET_NS


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
    submitted per bucket (``width_ns``, chosen from the span as for captures) and a latency histogram."""

    def __init__(self, path, iteration=1):
        self.path = path
        last = -1
        with IOLog(path) as log:
            for it, _w, _start, cols in log.blocks():
                if it == iteration and len(cols["submit_ns"]):
                    last = max(last, max(cols["submit_ns"]))
        self.width = _bucket_ns(max(last, 0))
        self.counts = [0] * (last // self.width + 1 if last >= 0 else 0)
        self.latency = LogHistogram()
        with IOLog(path) as log:
            for it, _w, _start, cols in log.blocks():
                if it != iteration:
                    continue
                for t in cols["submit_ns"]:
                    self.counts[t // self.width] += 1
                self.latency.add_many(cols["latency_ns"].tolist())


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
    return svg.line_chart("iops_over_time", title, series, "time since first IO (s)", f"IOPS ({where})", ymin=0)


def _histogram(doc, which):
    """(upper bounds µs, counts) of a results histogram (either version), empty buckets left out; the last
    (unbounded) bucket of a version 1 histogram at its lower bound."""
    h = (upgrade(doc) or {}).get("distributions", {}).get(which) or {}
    rows = [(hi if hi is not None else lo, c) for lo, hi, c in zip(h.get("lower") or [], h.get("upper") or [],
                                                                     h.get("counts") or [])]
    return [r[0] for r in rows if r[0] is not None], [r[1] for r in rows if r[0] is not None]


CDF_POINTS = 300


def _cdf_points(uppers, counts):
    """(x, cumulative fraction) at most CDF_POINTS of them (every bucket when fewer)."""
    total = sum(counts)
    step = max(1, -(-len(counts) // CDF_POINTS))
    xs, ys, cum = [], [], 0
    for i, (x, c) in enumerate(zip(uppers, counts)):
        cum += c
        if i % step == step - 1 or i == len(counts) - 1:
            xs.append(x)
            ys.append(cum / total)
    return xs, ys


def latency_cdf_plot(doc, iolog=None):
    if iolog is not None and iolog.latency.count:
        rows = iolog.latency.buckets()
        uppers, counts = [hi / 1000 for _lo, hi, _c in rows], [c for _lo, _hi, c in rows]
        source = "per-IO log, iteration 1"
    else:
        uppers, counts = _histogram(doc, "latency")
        source = "results"
    if not sum(counts):
        return svg.empty("latency_cdf", "Latency CDF", "no latency histogram in the results")
    xs, ys = _cdf_points([max(x, 1e-3) for x in uppers], counts)
    return svg.line_chart("latency_cdf", f"Latency CDF ({source})", [("fraction of IOs ≤ latency", xs, ys)],
                          "completion latency (µs, log scale; bucket upper bounds)", "fraction of IOs", xlog=True,
                          ymin=0, ymax=1, markers=len(xs) <= 40)


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


def lba_heatmap_plot(orig):
    if orig is None or not orig.times:
        return svg.empty("lba_heatmap", "LBA over time", "no original capture given (--original)")
    t0, t1 = orig.times[0], orig.times[-1]
    s0 = min(orig.sectors)
    s1 = max(s + max(n // 512, 1) for s, n in zip(orig.sectors, orig.nbytes))
    span_t = max(t1 - t0, 1)
    span_s = max(s1 - s0, 1)
    grid = [[0] * HEAT_TIME_BINS for _ in range(HEAT_LBA_BINS)]
    for t, s in zip(orig.times, orig.sectors):
        c = min((t - t0) * HEAT_TIME_BINS // span_t, HEAT_TIME_BINS - 1)
        r = min((s - s0) * HEAT_LBA_BINS // span_s, HEAT_LBA_BINS - 1)
        grid[r][c] += 1
    return svg.heatmap("lba_heatmap", f"LBA over time, original capture ({orig.device})", grid,
                       (0.0, span_t / 1e9), (s0 / 2048, s1 / 2048), "time since first IO (s)",
                       "LBA (MiB from device start)")


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
    rows, classes = [], []
    for g in result["groups"]:
        for m in g["metrics"]:
            b, c = m["baseline"], m["candidate"]
            rows.append((g["host"], g["device"], m["label"], f"{_n(b['mean'])} ± {_n(b['sd'])} ({b['n']})",
                         f"{_n(c['mean'])} ± {_n(c['sd'])} ({c['n']})",
                         "–" if m["change_pct"] is None else f"{m['change_pct']:+.1f} %",
                         f"{m['tolerance_pct']:g} %", "–" if m["p"] is None else f"{m['p']:.2g}", m["verdict"]))
            classes.append(m["verdict"] if m["verdict"] != "pass" else "")
    head = ("host", "device", "metric", "baseline mean ± sd (n)", "candidate mean ± sd (n)", "change", "tolerance",
            "p", "verdict")
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


def render(focus=None, focus_label="", runs=(), baseline_rows=(), baseline_name=None, verdict=None,
           original_dir=None, replay_dir=None, original_device=None, replay_device=None, band_k=2.0, io_log=None,
           stats=None):
    """The HTML text of the report (``stats``: a ``blkfleet stats`` document for the workload section)."""
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
        "<title>blkfleet report</title><style>" + CSS + "</style></head><body>",
        "<h1>blkfleet report</h1>",
        f'<p class="meta">generated {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")} '
        f"by blkfleet {escape(__version__)}; {len(runs)} runs"
        + (f", baseline {escape(baseline_name)}" if baseline_name else "") + "</p>",
    ]
    if verdict is not None:
        parts.append(verdict_html(verdict))
    parts.append(summary_html(focus, focus_label))
    if fid is not None:
        parts.append(fidelity_html(fid))
    if stats is not None:
        parts.append(stats_html(stats))
    parts.append('<h2 id="plots">Replay plots</h2>')
    plots = [iops_plot(orig, replay, focus, acc, iolog), latency_cdf_plot(focus, iolog), lateness_plot(focus),
             lba_heatmap_plot(orig)]
    parts += [f"<figure>{p}</figure>" for p in plots]
    parts.append(f'<h2 id="trends">Trends across runs (baseline band: mean ± {band_k:g} sd)</h2>')
    if runs:
        parts.append(_table(("#", "run", "host", "device", "started"),
                            [(i + 1, r[0], r[2], r[3], r[4].get("started", "")) for i, r in enumerate(runs)]))
    parts += [f"<figure>{p}</figure>" for p in trend_plots(runs, baseline_rows, band_k)]
    parts.append("</body></html>\n")
    return "".join(parts)


def from_store(store, baseline=None, host=None, device=None, band_k=2.0):
    """(runs, baseline rows, verdict) from a results store, for ``render``."""
    rows = store.rows(host=host, device=device)
    docs = {}
    runs = []
    for r in rows:
        if r["run_id"] not in docs:
            docs[r["run_id"]] = store.get(r["run_id"]).doc
        runs.append((f"run {r['run_id']}", r["run_id"], r["host"], r["device"], docs[r["run_id"]]))
    baseline_rows, verdict = [], None
    if baseline:
        baseline_rows = store.baseline(baseline)
        verdict = evaluate(store, baseline, host=host, device=device)
    return runs, baseline_rows, verdict
