"""Synthetic results documents that match schemas/results.schema.json (version 2, or version 1 with
``version=1``: results-v1.schema.json), with controllable noise and slowdowns."""

import json
import random
from pathlib import Path

from blkfleet.results.document import SCHEMA, SCHEMA_V1, SCHEMAS
from blkfleet.results.histogram import LogHistogram
from helpers import SCHEMAS as SCHEMA_DIR

SCHEMA_PATH = SCHEMA_DIR / SCHEMAS[SCHEMA]
BOUNDS_US = tuple(m * 10 ** e for e in range(0, 8) for m in (1, 2, 5))  # version 1: 1 us .. 50 s, 1-2-5 steps


_VALIDATORS = {}


def validate(doc):
    """Validate with the jsonschema package against the shipped schema of the document's version (raises on a
    mismatch)."""
    version = doc.get("schema")
    if version not in _VALIDATORS:
        import jsonschema

        schema = json.loads((SCHEMA_DIR / SCHEMAS[version]).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        _VALIDATORS[version] = jsonschema.Draft202012Validator(schema)
    _VALIDATORS[version].validate(doc)


def _values(rng, median_us, spread, n):
    return [rng.lognormvariate(0, spread) * median_us for _ in range(n)]


def _hist(rng, median_us, spread, n, version=2):
    values = _values(rng, median_us, spread, n)
    if version == 2:
        h = LogHistogram()
        h.add_many([int(v * 1000) for v in values])
        return h.to_json()
    counts = [0] * (len(BOUNDS_US) + 1)
    for v in values:
        i = next((k for k, b in enumerate(BOUNDS_US) if v <= b), len(BOUNDS_US))
        counts[i] += 1
    return {"bounds_us": list(BOUNDS_US), "counts": counts}


def make_doc(seed=0, host="hostA", device="loop1", target="/dev/loop7", iterations=3, iops=10000.0,
             lat_p50=80.0, lat_p99=400.0, late_p99=60.0, noise=0.02, slowdown=1.0, started=None, ios=3000,
             timeline_s=3.0, version=2, per_op=True):
    """A results document of a single-device replay; every iteration's figures get ``noise`` (relative sd).

    ``slowdown`` > 1 divides IOPS/MB/s by it and multiplies latency and lateness by it. Without ``per_op``, a
    version 2 document as engines before the histograms per op wrote it: no ``by_op`` histograms, no lateness
    in the timeline.
    """
    rng = random.Random(seed)
    mb_per_io = 4096 / 1e6

    def jitter(x):
        return round(x * (1 + rng.gauss(0, noise)), 3)

    iters = []
    for i in range(iterations):
        it_iops = jitter(iops / slowdown)
        p50 = jitter(lat_p50 * slowdown)
        p99 = max(p50, jitter(lat_p99 * slowdown))
        lp99 = jitter(late_p99 * slowdown)
        iters.append({
            "iteration": i + 1, "ios": ios, "duration_s": round(ios / it_iops, 6), "iops": it_iops,
            "mb_s": round(it_iops * mb_per_io, 3),
            "latency_us": {"p50": p50, "p90": round((p50 + p99) / 2, 3), "p99": p99, "p99.9": round(p99 * 1.5, 3),
                           "max": round(p99 * 3, 3)},
            "lateness_us": {"p50": round(lp99 / 5, 3), "p99": lp99, "max": round(lp99 * 4, 3)},
            "late_ios": 0,
        })

    def avg(key, sub=None):
        vals = [(it[key] if sub is None else it[key][sub]) for it in iters]
        return round(sum(vals) / len(vals), 3)

    figures = {
        "ios": ios * iterations, "bytes": ios * iterations * 4096, "by_op": {"read": {"ios": ios * iterations,
                                                                                     "bytes": ios * iterations * 4096}},
        "skipped": {}, "duration_s": round(sum(it["duration_s"] for it in iters), 6), "iops": avg("iops"),
        "mb_s": avg("mb_s"),
        "latency_us": {k: avg("latency_us", k) for k in ("p50", "p90", "p99", "p99.9", "max")},
        "lateness_us": {k: avg("lateness_us", k) for k in ("p50", "p99", "max")},
        "late_ios": 0, "errors": {"count": 0, "first": None},
    }
    buckets = int(timeline_s / 0.1)
    per_bucket = ios / buckets
    timeline = [max(0, int(rng.gauss(per_bucket, per_bucket * 0.1))) for _ in range(buckets)]
    started = started or f"2026-01-{1 + seed % 28:02d}T02:00:{seed % 60:02d}.000+00:00"
    doc = {
        "schema": SCHEMA, "engine_version": "0.1.0", "host": host, "kernel": "6.1.0-test", "python": "3.11.7",
        "started": started, "finished": started, "input": "/srv/bundles/randmix", "formats": ["native"],
        "device_map": {device: target}, "ioengine": "aio", "mode": "timed", "acc_factor": 1.0,
        "iterations": iterations, "write_enable": False, "writes_replayed_as_reads": True,
        "workers": [{"slot": 0, "cpu": 0, "streams": [f"{device}.replay.0"], "ios": ios}],
        "late_threshold_us": 1000.0, "interrupted": False,
        "devices": {device: {**figures, "target": target, "target_size": 64 << 20, "logical_block_size": 512}},
        "total": figures, "per_iteration": iters,
        "distributions": {"latency": _hist(rng, lat_p50 * slowdown, 0.6, ios),
                          "lateness": _hist(rng, late_p99 * slowdown / 5, 0.8, ios),
                          "timeline": {"bucket_s": 0.1, "buckets": len(timeline),
                                       "series": _timeline_series(seed, device, timeline, lat_p50 * slowdown,
                                                                  late_p99 * slowdown / 5 if per_op else None)}},
    }
    if per_op and version == 2:
        by_op = _by_op(seed, ios, lat_p50 * slowdown, late_p99 * slowdown / 5)
        dist = doc["distributions"]
        dist["devices"] = {device: {"latency": dist["latency"], "lateness": dist["lateness"], "by_op": by_op}}
    if version == 1:
        doc.update(schema=SCHEMA_V1, engine=doc.pop("ioengine"),
                   workers=[{"cpu": 0, "streams": [f"{device}.replay.0"], "ios": ios}],
                   distributions={"latency": _hist(rng, lat_p50 * slowdown, 0.6, ios, 1),
                                  "lateness": _hist(rng, late_p99 * slowdown / 5, 0.8, ios, 1),
                                  "timeline": {"bucket_s": 0.1, "ios": timeline}})
    return doc


def _timeline_series(seed, device, reads, lat_us, late_us=None):
    """Read and write series of a version 2 timeline (IOs, bytes, mean latency, mean in flight; with
    ``late_us``, mean and max lateness), from their own random numbers so that the other figures of a seed stay
    as they were."""
    rng = random.Random(seed + 1_000_003)
    writes = [n // 4 for n in reads]
    out = []
    for op, ios, scale in (("read", reads, 1.0), ("write", writes, 1.6)):
        latency = [round(lat_us * scale * rng.lognormvariate(0, 0.15), 3) if n else None for n in ios]
        out.append({"device": device, "op": op, "ios": ios, "bytes": [n * 4096 for n in ios],
                    "latency_mean_us": latency,
                    "in_flight": [round(n * (v or 0) / 1e5, 3) for n, v in zip(ios, latency)]})
    if late_us is not None:
        late = random.Random(seed + 2_000_003)
        for series in out:
            mean = [round(late_us * late.lognormvariate(0, 0.3), 3) if n else None for n in series["ios"]]
            series["lateness_mean_us"] = mean
            series["lateness_max_us"] = [round(m * late.uniform(2, 6), 3) if m is not None else None for m in mean]
    return out


def _by_op(seed, ios, lat_us, late_us):
    """Latency and lateness histograms of reads (``ios``) and writes (a quarter as many, 1.6 times slower), from
    their own random numbers."""
    rng = random.Random(seed + 3_000_003)
    return {op: {"latency": _hist(rng, lat_us * scale, 0.6, n), "lateness": _hist(rng, late_us, 0.8, n)}
            for op, n, scale in (("read", ios, 1.0), ("write", ios // 4, 1.6))}


def write_doc(path, doc):
    Path(path).write_text(json.dumps(doc, indent=1))
    return str(path)
