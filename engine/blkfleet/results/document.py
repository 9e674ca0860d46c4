"""The results of a replay as the results JSON (schemas/results.schema.json, ``blkfleet-results/2``), built from
the streaming summaries; and documents of the first version (``blkfleet-results/1``) read as the second.

Version 2 (docs/replay.md, "Results"): latency and lateness percentiles come from log-linear histograms
(``histogram.py``: at most 0.4 % off an exact percentile; min and max exact), which are in the document too,
in total, per device and per device and op (``distributions``, its ``devices`` and their ``by_op``); the
timeline has one series per device and op per 100 ms (IOs, bytes, mean latency, mean in flight, mean and max
lateness) over the whole replay; ``ioengine`` names the IO engine (``engine`` in version 1); and the document
says how many workers were chosen and why (``worker_count``), what the look-ahead window holds (``window``), how
the feeder kept up (``feeder``), the start-up and finish times (``timing``) and the per-IO log (``io_log``). The
histograms per op and the timeline's lateness came later within version 2: optional in the schema, absent from
older documents. Durations over several iterations are the sum of each iteration's first submission to last
completion. The IOs a worker completed before it died are counted.

``upgrade(doc)`` reads a version 1 document as version 2 (see its docstring); documents are stored as written.
"""

import datetime
import os
import platform
import socket
import time

from .. import __version__
from ..replay.realtime import AUTO_BATCH_NS
from ..replayfile.ops import OP_NAMES

SCHEMA = "blkfleet-results/2"
SCHEMA_V1 = "blkfleet-results/1"
SCHEMAS = {SCHEMA: "results.schema.json", SCHEMA_V1: "results-v1.schema.json"}
LATENCY_PS = (50, 90, 99, 99.9, 100)
LATENCY_KEYS = ("p50", "p90", "p99", "p99.9", "max")
LATENESS_PS = (50, 99, 100)
LATENESS_KEYS = ("p50", "p99", "max")


def _us(hist, ps, keys):
    return {k: (round(v / 1000, 3) if v is not None else None) for k, v in zip(keys, hist.percentiles(ps))}


def figures(summary, errors=None):
    """Figures of a Summary; ``errors``: [count, first message] instead of the summary's own."""
    ios, total_bytes = summary.ios, summary.nbytes
    duration = summary.duration_ns / 1e9
    count, first = errors if errors is not None else summary.errors
    return {
        "ios": ios,
        "bytes": total_bytes,
        "by_op": {OP_NAMES[op]: {"ios": e[0], "bytes": e[1]} for op, e in sorted(summary.by_op.items())},
        "skipped": {OP_NAMES[op]: n for op, n in sorted(summary.skipped.items())},
        "duration_s": round(duration, 6),
        "iops": round(ios / duration, 1) if duration > 0 else 0.0,
        "mb_s": round(total_bytes / duration / 1e6, 3) if duration > 0 else 0.0,
        "latency_us": _us(summary.latency, LATENCY_PS, LATENCY_KEYS),
        "lateness_us": _us(summary.lateness, LATENESS_PS, LATENESS_KEYS),
        "late_ios": summary.late,
        "errors": {"count": count, "first": first},
    }


def _iteration(index, summary):
    fig = figures(summary)
    return {"iteration": index, **{k: fig[k] for k in (
        "ios", "duration_s", "iops", "mb_s", "latency_us", "lateness_us", "late_ios")}}


class Run:
    """What ``build`` reads: @collector (replay.collect.Collector), @targets, @lanes, @outcomes (per iteration
    {slot: worker Outcome or None}), @opts, @started (ISO 8601), @sizing (the worker-count record), @workers
    (per worker dicts, ``replay.run.worker_figures``), @feeder, @window (its caps), @iolog (writer or None)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def _feeder(run, stalls):
    out = {"stalls": stalls, "stall_s": round(sum(w["stall_s"] for w in run.workers), 6), "behind": bool(stalls)}
    cpu = getattr(run, "parent_cpu_s", None)
    ios = sum(w["ios"] for w in run.workers)
    if cpu is not None:
        out["parent_cpu_s"] = round(cpu, 3)
        out["parent_cpu_us_per_io"] = round(cpu / ios * 1e6, 3) if ios else None
    return out


def _process_start_monotonic_ns():
    """CLOCK_MONOTONIC of this process's start (from /proc/self/stat: clock ticks since boot, 10 ms steps)."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        boot_ns = ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        return boot_ns - (time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns())
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _start(run):
    outs = [o for o in (run.outcomes[0].values() if run.outcomes else ()) if o is not None]
    walls = [o.start_wall for o in outs if o.start_wall is not None]
    opts, col = run.opts, run.collector
    first = None
    if walls and col.first_submit is not None and opts.start_ns is not None:
        first = min(walls) + (col.first_submit - opts.start_ns) / 1e9
    return {"requested": opts.start_at, "wall": min(walls) if walls else None, "first_submit_wall": first,
            "monotonic_ns": opts.start_ns}


def _timing(run):
    col = run.collector
    begun = _process_start_monotonic_ns()
    first = None if begun is None or col.first_submit is None else round((col.first_submit - begun) / 1e9, 3)
    return {"command_start_to_first_io_s": first, "last_completion_monotonic_ns": col.last_completion,
            "last_completion_to_results_s": None}


def stamp(doc):
    """Set ``timing.last_completion_to_results_s`` to now (call it just before writing the document)."""
    timing = doc.get("timing") or {}
    last = timing.get("last_completion_monotonic_ns")
    if last is not None:
        timing["last_completion_to_results_s"] = round((time.monotonic_ns() - last) / 1e9, 3)
    return doc


def build(run, interrupted, stop_reason=None, failed=None):
    """The results document (see the schema)."""
    col, targets, opts = run.collector, run.targets, run.opts
    iterations = sorted({it for it, _t in col.summaries})
    devices = {}
    for index, t in enumerate(targets):
        summary = col.merged(target=index)
        fig = figures(summary)
        fig.update(target=t.path, target_size=t.size, logical_block_size=t.block_size,
                   per_iteration=[_iteration(it, col.merged(iteration=it, target=index)) for it in iterations])
        devices[t.recorded] = fig
    total = col.merged()
    errors = [total.errors[0] + col.lost[0], total.errors[1] or col.lost[1]]
    names = {i: t.recorded for i, t in enumerate(targets)}
    feeder_stalls = sum(w["stalls"] for w in run.workers)
    doc = {
        "schema": SCHEMA,
        "engine_version": __version__,
        "host": socket.gethostname(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "started": run.started,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        "input": opts.source or os.path.abspath(opts.input_dir),
        "bundle_id": opts.bundle_id,
        "formats": sorted(opts.formats),
        "device_map": {t.recorded: t.path for t in targets},
        "ioengine": opts.ioengine,
        "depth": opts.depth,
        "batch_window_us": (AUTO_BATCH_NS if opts.batch_window_ns is None else opts.batch_window_ns) / 1000,
        "batch_window_auto": opts.batch_auto,
        "realtime": bool(opts.realtime),
        "mode": "no-stall" if opts.no_stall else opts.mode,
        "inflight": _inflight(run),
        "acc_factor": opts.acc,
        "iterations": opts.iterations,
        "write_enable": opts.write_enable,
        "writes_replayed_as_reads": not opts.write_enable,
        "workers": run.workers,
        "worker_count": run.sizing,
        "window": run.window,
        "feeder": _feeder(run, feeder_stalls),
        "late_threshold_us": opts.late_threshold_ns / 1000,
        "start": _start(run),
        "timing": _timing(run),
        "interrupted": interrupted,
        "stop_reason": stop_reason,
        "failed": failed,
        "run_id": opts.run_id,
        "probes": [{"device": t.recorded, "target": t.path, **t.probe} for t in targets if getattr(t, "probe", None)],
        "io_log": {"path": os.path.abspath(opts.io_log), "records": run.iolog.records} if run.iolog else None,
        "devices": devices,
        "total": figures(total, errors),
        "per_iteration": [_iteration(it, col.merged(iteration=it)) for it in iterations],
        "distributions": {
            "latency": total.latency.to_json(), "lateness": total.lateness.to_json(),
            "devices": {t.recorded: _histograms(col.merged(target=i)) for i, t in enumerate(targets)},
            "timeline": col.timeline.to_json(names, OP_NAMES),
        },
    }
    return doc


def _histograms(summary):
    """The latency and lateness histograms of a device's Summary, of all ops and per op (``by_op``)."""
    return {"latency": summary.latency.to_json(), "lateness": summary.lateness.to_json(),
            "by_op": {OP_NAMES[op]: {"latency": latency.to_json(), "lateness": lateness.to_json()}
                      for op, (latency, lateness) in sorted(summary.histograms.items())}}


def _inflight(run):
    """The load and dependency modes' in-flight distributions per device, recorded and replayed; else None."""
    if run.opts.mode == "timed":
        return None
    col, feeder = run.collector, run.feeder
    return {t.recorded: {"recorded": {str(k): v for k, v in sorted(feeder.recorded_depths[i].items())},
                         "replayed": {str(k): v for k, v in sorted(col.depths.get(i, {}).items())}}
            for i, t in enumerate(run.targets)}


def _mean(counts):
    n = sum(counts.values())
    return sum(int(k) * v for k, v in counts.items()) / n if n else 0.0


def summary_lines(doc):
    """A human summary (stderr)."""
    t = doc["total"]
    lines = [
        f"blkfleet replay: {t['ios']} IOs in {t['duration_s']:.3f} s ({t['iops']:.0f} IOPS, {t['mb_s']:.1f} MB/s), "
        f"mode {doc['mode']}, x{doc['acc_factor']}, ioengine {doc.get('ioengine', doc.get('engine'))}"
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
    for name, d in sorted((doc.get("inflight") or {}).items()):
        rec, rep = d["recorded"], d["replayed"]
        lines.append(f"  {name} in flight at issue: recorded mean {_mean(rec):.2f} max "
                     f"{max(map(int, rec), default=0)}, replayed mean {_mean(rep):.2f} max "
                     f"{max(map(int, rep), default=0)}")
    feeder = doc.get("feeder") or {}
    if feeder.get("behind"):
        lines.append(f"  the feeder fell behind: the workers' windows ran dry {feeder['stalls']} times "
                     f"({feeder['stall_s']:.3f} s in all)")
    if doc["writes_replayed_as_reads"]:
        lines.append("  writes were replayed as reads of the same extents (use -W to write)")
    return lines


# -- version 1 -----------------------------------------------------------------------------------------------------

def _histogram_v1(h):
    """A version 1 histogram (1-2-5 upper bounds in µs, the last count above the last bound) as version 2."""
    bounds, counts = h.get("bounds_us") or [], h.get("counts") or []
    lower, upper, kept = [], [], []
    for i, c in enumerate(counts):
        if not c:
            continue
        lower.append(bounds[i - 1] if i else None)
        upper.append(bounds[i] if i < len(bounds) else None)
        kept.append(c)
    return {"scheme": "1-2-5", "unit": "us", "count": sum(kept), "min": None, "max": None, "lower": lower,
            "upper": upper, "counts": kept}


def upgrade(doc):
    """A version 1 document read as version 2 (a copy; a version 2 document is returned as is). What changes:
    ``schema``; ``engine`` becomes ``ioengine``; each worker gets its ``slot`` (its position); the histograms
    (1-2-5 buckets: upper bounds in µs, the last count above them) become ``{"scheme": "1-2-5", "lower",
    "upper", "counts"}`` with the empty buckets left out (``lower`` null for the first bucket, ``upper`` null
    for the last: unbounded; ``min``/``max`` unknown: null); the timeline (IOs submitted per 100 ms over all
    devices, first iteration) becomes one series with device and op ``"*"`` and only ``ios``. Figures are
    unchanged (version 1 percentiles were exact). What version 1 did not record stays absent: ``worker_count``,
    ``window``, ``feeder``, ``timing``, ``io_log``."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_V1:
        return doc
    out = dict(doc)
    out["schema"] = SCHEMA
    if "engine" in out:
        out["ioengine"] = out.pop("engine")
    out["workers"] = [{"slot": i, **w} for i, w in enumerate(doc.get("workers") or [])]
    dist = doc.get("distributions") or {}
    timeline = dist.get("timeline") or {}
    ios = timeline.get("ios") or []
    out["distributions"] = {
        "latency": _histogram_v1(dist.get("latency") or {}),
        "lateness": _histogram_v1(dist.get("lateness") or {}),
        "timeline": {"bucket_s": timeline.get("bucket_s", 0.1), "buckets": len(ios),
                     "series": [{"device": "*", "op": "*", "ios": list(ios)}] if ios else []},
    }
    return out
