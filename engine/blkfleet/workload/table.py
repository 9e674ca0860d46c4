"""The stats document as terminal text: per device a line, a table by operation, completions, phases."""

from ..numtext import number


def _num(value, digits=1):
    return number(value, digits, grouped=True)


def _pct(value):
    return "-" if value is None else f"{100 * value:.1f}"


def render(doc):
    lines = []
    for name, d in doc["devices"].items():
        ws, hot = d["working_set"], d["hot_extents"]
        lines.append(f"{name}: {d['ios']:,} IOs, {d['bytes']:,} bytes over {d['span_ns'] / 1e9:.6f} s; working set "
                     f"{ws['bytes']:,} bytes ({ws['unit_bytes']}-byte units); hottest 10 % of {hot['touched']:,} "
                     f"extents of {hot['extent_bytes']:,} bytes take {_pct(hot['top_10pct'])} % of the IOs, "
                     f"{_num(hot['extents_for_50pct'])} extents half of them")
        head = ("op", "IOs", "bytes", "IOPS", "MB/s", "size mean", "gap p50 us", "gap p99 us", "seq %",
                "seek mean")
        rows = [head]
        for op, f in list(d["ops"].items()) + [("all", d["all"])]:
            rows.append((op, _num(f["ios"]), _num(f["bytes"]), _num(f["iops"]), _num(f["mb_s"], 3),
                         _num(f["size"]["mean"]),
                         _num(f["inter_arrival_us"]["p50"], 3), _num(f["inter_arrival_us"]["p99"], 3),
                         _pct(f["seek"]["sequential_fraction"]), _num(f["seek"]["mean_sectors"])))
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
        for r in rows:
            lines.append("  " + "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                                          for i, (c, w) in enumerate(zip(r, widths))))
        c = d.get("completions")
        if c:
            q, f = c["q2c_us"], c["in_flight"]
            lines.append(f"  completions: Q2C mean {_num(q['mean'], 3)} us, p50 {_num(q['p50'], 3)}, "
                         f"p99 {_num(q['p99'], 3)}, max {_num(q['max'], 3)}; in flight at a Q: mean "
                         f"{_num(f['mean'], 2)}, p99 {_num(f['p99'])}, max {_num(f['max'])} ({c['matched']:,} matched, "
                         f"{c['unmatched_queued']:,} Qs and {c['unmatched_completions']:,} Cs unmatched)")
        if d["phases"]:
            lines.append("  phase  start s  end s  IOPS  MB/s  read %")
            for i, p in enumerate(d["phases"]):
                lines.append(f"  {i + 1:5d}  {p['start_s']:7.3f}  {p['end_s']:5.3f}  {_num(p['iops'])}  "
                             f"{_num(p['mb_s'], 3)}  {_pct(p['read_fraction'])}")
    return "\n".join(lines) + "\n"
