"""The results of a replay: per device and in total, as the results JSON (schemas/results.schema.json)."""

import datetime
import os
import platform
import socket
from bisect import bisect_left

from .. import __version__
from ..replayfile.ops import OP_NAMES
from ..stats import percentiles

SCHEMA = "blkfleet-results/1"
LATENCY_PS = (50, 90, 99, 99.9, 100)
LATENESS_PS = (50, 99, 100)


def _us(values, ps, keys):
    got = percentiles(values, ps)
    return {k: (round(v / 1000, 3) if v is not None else None) for k, v in zip(keys, got)}


BOUNDS_US = tuple(m * 10 ** e for e in range(0, 8) for m in (1, 2, 5))  # 1 us .. 50 s, 1-2-5 steps
TIMELINE_BUCKET_NS = 100_000_000


def histogram(values_ns):
    """Counts of values (ns) per 1-2-5 bucket of BOUNDS_US (a value <= bound); the last count is overflow."""
    counts = [0] * (len(BOUNDS_US) + 1)
    bounds = [b * 1000 for b in BOUNDS_US]
    for v in values_ns:
        counts[bisect_left(bounds, v)] += 1
    return {"bounds_us": list(BOUNDS_US), "counts": counts}


def distributions(rows):
    """Latency and lateness histograms and IOs submitted per 100 ms, from (issued, planned, bytes, due,
    submit, latency) rows of one iteration."""
    lat, late, timeline = [], [], []
    for issued, _planned, _nbytes, due, submit, latency in rows:
        if issued < 0 or submit < 0:
            continue
        lat.append(latency)
        late.append(submit - due)
        bucket = submit // TIMELINE_BUCKET_NS
        if bucket >= len(timeline):
            timeline.extend([0] * (bucket + 1 - len(timeline)))
        timeline[max(bucket, 0)] += 1
    return {"latency": histogram(lat), "lateness": histogram(late),
            "timeline": {"bucket_s": TIMELINE_BUCKET_NS / 1e9, "ios": timeline}}


class _Memo:
    """figures() of row lists built from the same rows in the same order (a device's rows when there is one
    device, an iteration's when there is one iteration) are computed once: they are the same set of IOs."""

    def __init__(self, late_threshold_ns):
        self.late_threshold_ns = late_threshold_ns
        self._done = {}

    def __call__(self, rows, errors=0, first_error=None):
        key = (len(rows), id(rows[0]), id(rows[-1])) if rows else ()
        if key not in self._done:
            self._done[key] = figures(rows, 0, None, self.late_threshold_ns)
        return {**self._done[key], "errors": {"count": errors, "first": first_error}}


def figures(rows, errors, first_error, late_threshold_ns):
    """Figures of a set of IOs; ``rows``: (op issued, planned op, bytes, due, submit, latency) per IO."""
    by_op = {}
    skipped = {}
    lat, late = [], []
    first = last = None
    for issued, planned, nbytes, due, submit, latency in rows:
        if issued < 0:
            name = OP_NAMES[planned]
            skipped[name] = skipped.get(name, 0) + 1
            continue
        if submit < 0:
            continue
        entry = by_op.setdefault(OP_NAMES[issued], {"ios": 0, "bytes": 0})
        entry["ios"] += 1
        entry["bytes"] += nbytes
        lat.append(latency)
        late.append(submit - due)
        end = submit + latency
        first = submit if first is None or submit < first else first
        last = end if last is None or end > last else last
    ios = sum(v["ios"] for v in by_op.values())
    total_bytes = sum(v["bytes"] for v in by_op.values())
    duration = (last - first) / 1e9 if ios else 0.0
    return {
        "ios": ios,
        "bytes": total_bytes,
        "by_op": by_op,
        "skipped": skipped,
        "duration_s": round(duration, 6),
        "iops": round(ios / duration, 1) if duration > 0 else 0.0,
        "mb_s": round(total_bytes / duration / 1e6, 3) if duration > 0 else 0.0,
        "latency_us": _us(lat, LATENCY_PS, ("p50", "p90", "p99", "p99.9", "max")),
        "lateness_us": _us(late, LATENESS_PS, ("p50", "p99", "max")),
        "late_ios": sum(1 for x in late if x > late_threshold_ns),
        "errors": {"count": errors, "first": first_error},
    }


def _iteration(index, rows, memo):
    fig = memo(rows)
    return {"iteration": index + 1, **{k: fig[k] for k in (
        "ios", "duration_s", "iops", "mb_s", "latency_us", "lateness_us", "late_ios")}}


def _start(runs, opts):
    """When the first iteration started, in wall-clock seconds (for the start skew between hosts)."""
    outs = [o for _p, o in runs[0]] if runs else []
    walls = [o.start_wall for o in outs if o.start_wall is not None]
    first = [o.start_wall + min(t for t in o.submit if t >= 0) / 1e9 for o in outs
             if o.start_wall is not None and any(t >= 0 for t in o.submit)]
    return {"requested": opts.start_at, "wall": min(walls) if walls else None,
            "first_submit_wall": min(first) if first else None,
            "monotonic_ns": getattr(opts, "start_ns", None)}


def build(runs, targets, opts, started, interrupted, stop_reason=None, failed=None):
    """The results document. ``runs``: per iteration, a list of (plan, outcome) per worker; ``stop_reason``
    and ``failed``: why it stopped early, and the worker failure that stopped it (see the schema)."""
    per_device = {t.recorded: [] for t in targets}
    errors = {}  # target index (-1: not tied to one) -> [count, first]
    total_rows = []
    iterations = []
    first_rows = []
    device_iterations = {t.recorded: [] for t in targets}
    memo = _Memo(opts.late_threshold_ns)
    for it, pairs in enumerate(runs):
        it_rows = []
        it_device = {t.recorded: [] for t in targets}
        for plan, out in pairs:
            rows = zip(out.issued_op, plan.ops, plan.nbytes, plan.due, out.submit, out.latency)
            for row, target in zip(rows, plan.target):
                it_device[targets[target].recorded].append(row)
                it_rows.append(row)
            for target, (count, first) in out.errors.items():
                entry = errors.setdefault(target, [0, first])
                entry[0] += count
        total_rows.extend(it_rows)
        if not it:
            first_rows = it_rows
        iterations.append(_iteration(it, it_rows, memo))
        for name, rows in it_device.items():
            per_device[name].extend(rows)
            device_iterations[name].append(_iteration(it, rows, memo))
    devices = {}
    for index, t in enumerate(targets):
        count, first = errors.get(index, [0, None])
        fig = memo(per_device[t.recorded], count, first)
        fig.update(target=t.path, target_size=t.size, logical_block_size=t.block_size,
                   per_iteration=device_iterations[t.recorded])
        devices[t.recorded] = fig
    all_errors = sum(c for c, _f in errors.values())
    first_error = next((f for _t, (_c, f) in sorted(errors.items())), None)
    return {
        "schema": SCHEMA,
        "engine_version": __version__,
        "host": socket.gethostname(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "started": started,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        "input": opts.source or os.path.abspath(opts.input_dir),
        "bundle_id": opts.bundle_id,
        "formats": sorted(opts.formats),
        "device_map": {t.recorded: t.path for t in targets},
        "engine": opts.engine_name,
        "depth": opts.depth,
        "batch_window_us": opts.batch_window_ns / 1000,
        "realtime": bool(opts.realtime),
        "mode": "no-stall" if opts.no_stall else "timed",
        "acc_factor": opts.acc,
        "iterations": opts.iterations,
        "write_enable": opts.write_enable,
        "writes_replayed_as_reads": not opts.write_enable,
        "workers": [{"cpu": p.cpu_pinned, "streams": p.streams, "ios": len(p)} for p, _o in runs[0]] if runs else [],
        "late_threshold_us": opts.late_threshold_ns / 1000,
        "start": _start(runs, opts),
        "interrupted": interrupted,
        "stop_reason": stop_reason,
        "failed": failed,
        "run_id": getattr(opts, "run_id", None),
        "probes": [{"device": t.recorded, "target": t.path, **t.probe} for t in targets if getattr(t, "probe", None)],
        "devices": devices,
        "total": memo(total_rows, all_errors, first_error),
        "per_iteration": iterations,
        "distributions": distributions(first_rows),
    }


def summary_lines(doc):
    """A human summary (stderr)."""
    t = doc["total"]
    lines = [
        f"blkfleet replay: {t['ios']} IOs in {t['duration_s']:.3f} s ({t['iops']:.0f} IOPS, {t['mb_s']:.1f} MB/s), "
        f"mode {doc['mode']}, x{doc['acc_factor']}, engine {doc['engine']}"
        + (", SCHED_FIFO" if doc.get("realtime") else "")
        + (", FAILED" if doc.get("failed") else ", INTERRUPTED" if doc["interrupted"] else ""),
    ]
    for name, d in sorted(doc["devices"].items()):
        ops = ", ".join(f"{k} {v['ios']}" for k, v in sorted(d["by_op"].items()))
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(d["skipped"].items()))
        lines.append(
            f"  {name} -> {d['target']}: {d['ios']} IOs ({ops or 'none'})"
            + (f", skipped without -W: {skipped}" if skipped else "")
            + f"; latency p50 {d['latency_us']['p50']} us p99 {d['latency_us']['p99']} us; lateness p50 "
            f"{d['lateness_us']['p50']} us p99 {d['lateness_us']['p99']} us, {d['late_ios']} late; "
            f"{d['errors']['count']} errors" + (f" (first: {d['errors']['first']})" if d["errors"]["first"] else "")
        )
    if doc["writes_replayed_as_reads"]:
        lines.append("  writes were replayed as reads of the same extents (use -W to write)")
    return lines
