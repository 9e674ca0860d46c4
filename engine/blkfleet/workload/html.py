"""The workload section of ``blkfleet report`` (``--stats FILE``, a ``blkfleet stats --json`` document): per device a
table by operation, where the IOs go, completions, and IOPS over time by operation."""

from html import escape

from ..report import svg


def _n(v, digits=1):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}" if isinstance(v, float) else f"{v:,}"


def _row(cells, head=False):
    tag = "th" if head else "td"
    left = ' class="l"'
    return "<tr>" + "".join(f"<{tag}{left if i == 0 else ''}>{escape(str(c))}</{tag}>"
                            for i, c in enumerate(cells)) + "</tr>"


def stats_html(doc, label=""):
    parts = [f'<h2 id="workload">Workload{": " + escape(label) if label else ""}</h2>']
    for name, d in doc["devices"].items():
        ws, hot = d["working_set"], d["hot_extents"]
        parts.append(f'<p class="meta">{escape(name)}: {d["ios"]:,} IOs, {d["bytes"]:,} bytes over '
                     f'{d["span_ns"] / 1e9:.6f} s; working set {ws["bytes"]:,} bytes; the hottest 10 % of '
                     f'{hot["touched"]:,} extents of {hot["extent_bytes"]:,} bytes take '
                     f'{_n(None if hot["top_10pct"] is None else 100 * hot["top_10pct"])} % of the IOs</p>')
        rows = [_row(("op", "IOs", "bytes", "IOPS", "MB/s", "mean size", "gap p50 µs", "gap p99 µs", "sequential %",
                      "seek mean (sectors)"), head=True)]
        for op, f in list(d["ops"].items()) + [("all", d["all"])]:
            seq = f["seek"]["sequential_fraction"]
            rows.append(_row((op, _n(f["ios"]), _n(f["bytes"]), _n(f["iops"]), _n(f["mb_s"], 3),
                              _n(f["size"]["mean"]), _n(f["inter_arrival_us"]["p50"], 3),
                              _n(f["inter_arrival_us"]["p99"], 3), _n(None if seq is None else 100 * seq),
                              _n(f["seek"]["mean_sectors"]))))
        parts.append("<table>" + "".join(rows) + "</table>")
        c = d.get("completions")
        if c:
            q, inf = c["q2c_us"], c["in_flight"]
            parts.append(f'<p class="meta">Q2C mean {_n(q["mean"], 3)} µs, p50 {_n(q["p50"], 3)}, p99 '
                         f'{_n(q["p99"], 3)}; IOs in flight at a Q: mean {_n(inf["mean"], 2)}, max {_n(inf["max"])}'
                         "</p>")
        tl = d.get("timeline")
        if tl and tl["ios"]:
            width = tl["bucket_s"]
            series = [(op, [i * width for i in range(len(v))], [k / width for k in v]) for op, v in tl["ios"].items()]
            parts.append("<figure>" + svg.line_chart(f"workload_iops_{name}", f"{name}: IOPS over time by operation",
                                                       series, "time since the first IO (s)",
                                                       f"IOPS ({width * 1000:g} ms buckets)", ymin=0) + "</figure>")
    return "".join(parts)
