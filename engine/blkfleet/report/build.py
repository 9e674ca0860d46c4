"""``blkfleet report``: one self-contained HTML file (inline CSS and SVG, no script, no network) with the plots of
a replay and of the stored runs:

- ``iops_over_time``: IOs per 100 ms as IOPS, original capture vs replay capture (from their Q events) when both
  are given; the replay's own submission timeline (results JSON) otherwise, or as well;
- ``latency_cdf``: cumulative fraction of IOs by completion latency (log µs), from the results' histogram;
- ``lateness_histogram``: IOs per lateness bucket (submitted later than planned);
- ``lba_heatmap``: the original capture's Q events in time x LBA bins, colour = IO count (log scale);
- ``trend_<metric>``: each metric per stored run (mean of its samples, whiskers min..max) per host and device,
  with the baseline band mean ± k·sd of the baseline's samples (k = 2 by default).

With both captures, the fidelity figures of ``blkfleet compare`` are included; with a baseline and a store, the
regression verdict table of ``blkfleet regress`` too.
"""

import datetime
import math
from html import escape

from .. import __version__
from ..compare.fidelity import compare, load_capture, only_device
from ..numtext import number
from ..regress.significance import mean, variance
from ..regress.verdict import METRICS, evaluate, samples
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


def iops_plot(orig=None, replay=None, doc=None, acc=1.0):
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
    tl = (doc or {}).get("distributions", {}).get("timeline") or {}
    ios, bucket = tl.get("ios") or [], tl.get("bucket_s") or 0.1
    if ios:
        series.append(("replay submissions (results, iteration 1)", [i * bucket for i in range(len(ios))],
                       [c / bucket for c in ios]))
    title = "IOPS over time: original vs replay" if orig is not None and replay is not None else "IOPS over time"
    where = (f"{width / 1e6:g} ms buckets" + (f", results: {bucket * 1000:g} ms" if ios else "") if caps
             else f"{bucket * 1000:g} ms buckets")
    return svg.line_chart("iops_over_time", title, series, "time since first IO (s)", f"IOPS ({where})", ymin=0)


def _histogram(doc, which):
    h = (doc or {}).get("distributions", {}).get(which) or {}
    return h.get("bounds_us") or [], h.get("counts") or []


def latency_cdf_plot(doc):
    bounds, counts = _histogram(doc, "latency")
    total = sum(counts)
    if not total:
        return svg.empty("latency_cdf", "Latency CDF", "no latency histogram in the results")
    first = next(i for i, c in enumerate(counts) if c)
    last = max(i for i, c in enumerate(counts) if c)
    xs, ys, cum = [], [], 0
    if first > 0:
        xs.append(bounds[first - 1])
        ys.append(0.0)
    for i in range(first, min(last, len(bounds) - 1) + 1):
        cum += counts[i]
        xs.append(bounds[i])
        ys.append(cum / total)
    return svg.line_chart("latency_cdf", "Latency CDF (iteration 1)", [("fraction of IOs ≤ latency", xs, ys)],
                          "completion latency (µs, log scale; bucket upper bounds)", "fraction of IOs", xlog=True,
                          ymin=0, ymax=1, markers=True)


def lateness_plot(doc):
    bounds, counts = _histogram(doc, "lateness")
    if not sum(counts):
        return svg.empty("lateness_histogram", "Lateness histogram", "no lateness histogram in the results")
    first = next(i for i, c in enumerate(counts) if c)
    last = max(i for i, c in enumerate(counts) if c)
    labels = [(f"≤{svg.fmt_num(bounds[i])}" if i < len(bounds) else f">{svg.fmt_num(bounds[-1])}")
              for i in range(first, last + 1)]
    return svg.bar_chart("lateness_histogram", "Lateness histogram (iteration 1)", labels, counts[first:last + 1],
                         "lateness: submitted after the planned time (µs, bucket upper bounds)", "IOs", svg.PALETTE[4])


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
            f"started {escape(str(doc.get('started')))}, engine {escape(str(doc.get('engine')))} "
            f"{escape(str(doc.get('engine_version')))}, mode {escape(str(doc.get('mode')))}, x"
            f"{doc.get('acc_factor')}, {len(doc.get('per_iteration', []))} iterations</p>" + _table(head, rows))


def render(focus=None, focus_label="", runs=(), baseline_rows=(), baseline_name=None, verdict=None,
           original_dir=None, replay_dir=None, original_device=None, replay_device=None, band_k=2.0, stats=None):
    """The HTML text of the report (``stats``: a ``blkfleet stats`` document for the workload section)."""
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
    plots = [iops_plot(orig, replay, focus, acc), latency_cdf_plot(focus), lateness_plot(focus),
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
