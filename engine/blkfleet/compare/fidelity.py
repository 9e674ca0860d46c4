"""Fidelity of a replay: the Q events of a capture of the replay, matched IO by IO against the original capture.

Definitions (docs: ARCHITECTURE.md, "Fidelity: how replay quality is measured"):

- Each capture is the Q events of all its ``DEV.blktrace.CPU`` files, merged by time (ties: CPU file order, then
  file order). The replay side may be a replay's per-IO log (``replay --io-log``) instead: its IOs at their
  submit instants, as the replayer saw them (a capture sees them a little later, in the block layer). Each IO
  is classified (``replayfile.ops.classify``) into an operation; its key is (op, sector, bytes). Flags (sync,
  FUA, meta...) are not part of the key.
- Matching: the n-th original IO with a key matches the n-th replayed IO with the same key (both in time order).
- ``reads_for_writes``: a replay run without writes enabled issues every write as a read of the same extent, and
  issues no discard, flush or write-zeroes. With it, original writes match replayed reads, and the original's
  discards, flushes and write-zeroes are *expected missing*: not matched, counted apart, and left out of the
  IOPS comparison. Counts always add up:
  original IOs = matched + unmatched original + expected missing; replayed IOs = matched + unmatched replay.
- Time origin of each capture: its first matched IO. Span of each capture: its last matched IO minus its first.
  ``acc`` (the replay was run ``acc`` times faster) divides original offsets, gaps and spans.
- issue-time error, per matched IO: |replay offset - original offset / acc|: p50, p90, p99, max.
- inter-arrival error, over consecutive matched IOs in original order: |replay gap - original gap / acc|: p50, p99.
- IOPS: IOs counted per 100 ms bucket of each capture's own timeline, original offsets divided by acc; buckets
  cover the original span / acc (the last one may be partial, for both sides alike). Every IO of a capture counts
  (matched or not; expected-missing ones excepted), so dropped or extra IOs show up as IOPS error. The figure is
  the mean absolute percentage error (percent) over the buckets where the original has IOs.
- span ratio: replay span / (original span / acc).

Percentiles are exact, linear interpolation (numpy's default, see ``blkfleet.stats``). Output times are in µs.
Figures that need at least one (two, for gaps and spans) matched IOs are None without them.
"""

import math
from bisect import bisect_left
from dataclasses import dataclass
from itertools import repeat

from ..errors import BlkfleetError
from ..numtext import number
from ..percpu import find_devices, find_per_cpu
from ..replayfile.ops import DISCARD, FLUSH, OP_NAMES, READ, WRITE, WRITE_ZEROES, classify
from ..results.iolog import IOLog, is_iolog
from ..stats import mape, percentiles_sorted
from ..trace.queued import queued_batches

BUCKET_NS = 100_000_000  # 100 ms
PERCENTILE_METHOD = "linear"
_OP_BITS = 3  # key = sector << (32 + 3) | bytes << 3 | op
_NOT_REPLAYED = (DISCARD, FLUSH, WRITE_ZEROES)


@dataclass
class Capture:
    """The Q events of one capture as time-sorted columns."""

    directory: str
    device: str
    times: list  # ns
    sectors: list
    nbytes: list
    ops: list
    left_out: int = 0  # Q events before ``since_ns`` (load_capture), not in the lists above

    def __len__(self):
        return len(self.times)

    def ios_by_op(self):
        counts = [0] * len(OP_NAMES)
        for op in self.ops:
            counts[op] += 1
        return {name: counts[i] for i, name in enumerate(OP_NAMES)}


def only_device(directory, what):
    """The single device with ``DEV.blktrace.N`` files in ``directory``; BlkfleetError if none or several."""
    devices = find_devices(directory, "blktrace")
    if not devices:
        raise BlkfleetError(f"{directory}: no DEV.blktrace.N files (is this a capture directory?)")
    if len(devices) > 1:
        raise BlkfleetError(f"{directory}: several devices ({', '.join(devices)}): choose one with {what}")
    return devices[0]


def load_capture(directory, device, since_ns=None):
    """Read, merge by time and classify the Q events of every CPU file of ``device`` in ``directory``;
    ``since_ns``: leave out the events before that instant (a replay's start: the probes made before it)."""
    times, sectors, nbytes, actions = [], [], [], []
    for path in find_per_cpu(directory, device, "blktrace"):
        for batch in queued_batches(path):
            times += batch.times
            sectors += batch.sectors
            nbytes += batch.nbytes
            actions += batch.actions
    left_out = 0
    if since_ns is not None:
        keep = [i for i, t in enumerate(times) if t >= since_ns]
        left_out = len(times) - len(keep)
        if left_out:
            times = [times[i] for i in keep]
            sectors = [sectors[i] for i in keep]
            nbytes = [nbytes[i] for i in keep]
            actions = [actions[i] for i in keep]
    if not times:
        raise BlkfleetError(f"{directory}: no queued IOs (Q events) for device {device}"
                            + (f" after the replay's start ({left_out} before it)" if since_ns is not None else ""))
    if any(a > b for a, b in zip(times, times[1:])):
        # Timsort merges the per-CPU runs (each in time order, unless its clock stepped back): in effect a k-way
        # merge; stable for ties.
        order = sorted(range(len(times)), key=times.__getitem__)
        times = [times[i] for i in order]
        sectors = [sectors[i] for i in order]
        nbytes = [nbytes[i] for i in order]
        actions = [actions[i] for i in order]
    # classify() depends on the length only through "is it zero" (a flush without data): two tables per action.
    distinct = set(actions)
    op_sized = {a: classify(a, 1)[0] for a in distinct}
    op_empty = {a: classify(a, 0)[0] for a in distinct}
    if op_sized == op_empty:
        ops = [op_sized[a] for a in actions]
    else:
        ops = [op_sized[a] if n else op_empty[a] for a, n in zip(actions, nbytes)]
    return Capture(str(directory), device, times, sectors, nbytes, ops, left_out)


def load_iolog(path, device=None, iteration=1):
    """The IOs of one iteration of a replay's per-IO log (``blkfleet replay --io-log``) as a Capture: each IO at
    its submit instant (CLOCK_MONOTONIC of the replay's host), with the operation done. ``device``: a recorded
    device of the log's table (default: the only one)."""
    with IOLog(path) as log:
        names = [name for name, _target in log.devices]
        if device is None:
            if len(set(names)) != 1:
                raise BlkfleetError(f"{path}: several devices ({', '.join(names)}): choose one with --replay-device")
            device = names[0]
        if device not in names:
            raise BlkfleetError(f"{path}: no device {device} in this IO log ({', '.join(names) or 'none'})")
        wanted = names.index(device)
        times, sectors, nbytes, ops = [], [], [], []
        for it, _worker, start, cols in log.blocks():
            if it != iteration:
                continue
            for t, off, n, dev, op in zip(cols["submit_ns"], cols["offset"], cols["nbytes"], cols["device"],
                                          cols["op"]):
                if dev == wanted:
                    times.append(start + t)
                    sectors.append(off // 512)
                    nbytes.append(n)
                    ops.append(op)
    if not times:
        raise BlkfleetError(f"{path}: no IO of {device} in iteration {iteration}")
    order = sorted(range(len(times)), key=times.__getitem__)  # the log holds IOs in completion order
    return Capture(str(path), device, [times[k] for k in order], [sectors[k] for k in order],
                   [nbytes[k] for k in order], [ops[k] for k in order])


def _keys(cap, op_map=None):
    """Integer match keys (sector, bytes, op); None where ``op_map`` maps the op to None (not matchable)."""
    shift = 32 + _OP_BITS
    if op_map is None:
        return [(s << shift) | (n << _OP_BITS) | op for s, n, op in zip(cap.sectors, cap.nbytes, cap.ops)]
    mapped = [op_map.get(op, op) for op in range(len(OP_NAMES))]
    return [
        None if mapped[op] is None else (s << shift) | (n << _OP_BITS) | mapped[op]
        for s, n, op in zip(cap.sectors, cap.nbytes, cap.ops)
    ]


def match(orig_keys, replay_keys):
    """For each original IO, the index of the replayed IO it matches, or None: the n-th original IO with a key
    matches the n-th replayed IO with that key (both in time order). ``None`` keys never match."""
    n = len(orig_keys)
    # First pass, in C: each key's first original IO against the key's first replayed IO.
    first = dict(zip(reversed(orig_keys), range(n - 1, -1, -1)))  # key -> its first original index
    first.pop(None, None)
    got = list(map(first.pop, replay_keys, repeat(None, len(replay_keys))))  # replay index -> original or None
    matched = [None] * n
    for j, i in enumerate(got):
        if i is not None:
            matched[i] = j
    # Repeated keys: the original IOs left over that are not their key's first are its 2nd, 3rd... in order;
    # the replayed IOs left over take them in replay order.
    later = {}  # key -> its later original indices, reversed (pop() gives the next one)
    for i in [i for i, j in enumerate(matched) if j is None]:
        k = orig_keys[i]
        if k is not None and first.get(k) != i:
            later.setdefault(k, []).append(i)
    if later:
        for rest in later.values():
            rest.reverse()
        for j in [j for j, i in enumerate(got) if i is None]:
            rest = later.get(replay_keys[j])
            if rest:
                matched[rest.pop()] = j
    return matched


def _us(ns):
    return None if ns is None else ns / 1000


def _pcts(values, ps):
    values.sort()
    return [_us(v) for v in percentiles_sorted(values, ps, PERCENTILE_METHOD)]


def compare(orig, replay, acc=1.0, reads_for_writes=False):
    """The fidelity figures (a JSON-ready dict) of Capture ``replay`` against Capture ``orig``."""
    if not (acc > 0 and math.isfinite(acc)):
        raise BlkfleetError(f"acceleration factor must be a finite number > 0, not {acc}")
    op_map = {WRITE: READ, **{op: None for op in _NOT_REPLAYED}} if reads_for_writes else None
    okeys = _keys(orig, op_map)
    expected_missing = okeys.count(None) if reads_for_writes else 0
    pairs = match(okeys, _keys(replay))
    matched = len(pairs) - pairs.count(None)

    issue = inter = offset = residual = None
    ospan = rspan = span_ratio = iops_mape = None
    buckets = 0
    if matched:
        ot = [t for t, j in zip(orig.times, pairs) if j is not None]  # in original order
        rt = [replay.times[j] for j in pairs if j is not None]
        o0, r0 = ot[0], min(rt)  # each capture's first matched IO
        ospan, rspan = ot[-1] - o0, max(rt) - r0
        if acc == 1:  # integers, exact
            signed = [(r - r0) - (o - o0) for o, r in zip(ot, rt)]
        else:
            signed = [(r - r0) - (o - o0) / acc for o, r in zip(ot, rt)]
        # replay gap - original gap / acc is the difference of consecutive signed issue-time errors
        gaps = [abs(b - a) for a, b in zip(signed, signed[1:])]
        p50, p90, p99, pmax = _pcts(list(map(abs, signed)), (50, 90, 99, 100))
        issue = {"p50": p50, "p90": p90, "p99": p99, "max": pmax}
        # A constant shift (e.g. a first IO delayed by a cold start) counts in full above; the median signed
        # error and what is left around it tell a shifted-but-steady replay from a jittery one.
        (offset,) = _pcts(signed, (50,))
        shift = offset * 1000
        r50, r99 = _pcts([abs(e - shift) for e in signed], (50, 99))
        residual = {"p50": r50, "p99": r99}
        g50, g99 = _pcts(gaps, (50, 99))
        inter = {"p50": g50, "p99": g99}
        if ospan > 0:
            span_ratio = rspan / (ospan / acc)
        otimes = orig.times if not reads_for_writes else [t for t, k in zip(orig.times, okeys) if k is not None]
        iops_mape, buckets = _iops_mape(otimes, replay.times, o0, r0, ospan, acc)

    return {
        "original": _side(orig, ospan),
        "replay": _side(replay, rspan),
        "acc_factor": float(acc),
        "reads_for_writes": bool(reads_for_writes),
        "matched": matched,
        "unmatched_original": len(orig) - matched - expected_missing,
        "unmatched_replay": len(replay) - matched,
        "expected_missing": expected_missing,
        "issue_time_error_us": issue,
        "issue_time_offset_us": offset,
        "issue_time_error_around_offset_us": residual,
        "inter_arrival_error_us": inter,
        "iops": {"bucket_us": BUCKET_NS / 1000, "buckets": buckets, "mape_pct": iops_mape},
        "span_ratio": span_ratio,
        "percentile_method": PERCENTILE_METHOD,
    }


def _side(cap, span_ns):
    return {
        "directory": cap.directory,
        "device": cap.device,
        "ios": len(cap),
        "left_out_before_start": cap.left_out,
        "ios_by_op": cap.ios_by_op(),
        "span_us": _us(span_ns),
    }


def _iops_mape(otimes, rtimes, o0, r0, ospan, acc):
    """(MAPE in percent or None, number of buckets) of the per-100-ms IO counts (times sorted, in ns).

    Only the buckets holding original IOs count (MAPE skips the others), so only those are looked at, found by
    jumping from one original IO to the next bucket's: memory and time follow the IOs' buckets, not the span (a
    capture with one wild time stamp would otherwise ask for a list as long as the span is in 100 ms steps)."""
    n = int(ospan / acc // BUCKET_NS) + 1
    width = BUCKET_NS * acc  # a bucket of the replay's timeline, in original ns
    # Bucket b holds the IOs at or after its start and before the next start: differences of bisections.
    ocount, rcount = [], []
    b = k = 0  # the next bucket to look at; the first original IO not counted yet
    while k < len(otimes) and b < n:
        b = max(b, int((otimes[k] - o0) // width) - 1)  # the buckets before IO k's are empty (one spare: rounding)
        lo, hi = (bisect_left(otimes, o0 + x * width) for x in (b, b + 1))
        if hi > lo and b < n:
            ocount.append(hi - lo)
            rcount.append(bisect_left(rtimes, r0 + (b + 1) * BUCKET_NS) - bisect_left(rtimes, r0 + b * BUCKET_NS))
        k = max(k, hi)
        b += 1
    return mape(ocount, rcount), n


def compare_dirs(orig_dir, replay_dir, device=None, replay_device=None, acc=1.0, reads_for_writes=False,
                 replay_start_ns=None, iteration=1):
    """Load both captures (devices defaulting to the only one of each directory) and compare them;
    ``replay_start_ns``: the replay's start instant (CLOCK_MONOTONIC of the replay's host, the time base of a
    capture made there): replay-capture IOs before it (signature probes) are left out. ``replay_dir`` may be a
    replay's per-IO log instead (its submit times; ``iteration``: which one)."""
    if not (acc > 0 and math.isfinite(acc)):
        raise BlkfleetError(f"acceleration factor must be a finite number > 0, not {acc}")
    device = device or only_device(orig_dir, "--device")
    orig = load_capture(orig_dir, device)
    if is_iolog(replay_dir):
        replay = load_iolog(replay_dir, replay_device, iteration)
    else:
        replay_device = replay_device or only_device(replay_dir, "--replay-device")
        replay = load_capture(replay_dir, replay_device, replay_start_ns)
    result = compare(orig, replay, acc, reads_for_writes)
    result["replay_start_monotonic_ns"] = replay_start_ns
    return result


def table(result):
    """The readable summary printed by ``blkfleet compare`` without --json."""
    o, r = result["original"], result["replay"]
    lines = [
        f"original  {o['directory']} ({o['device']}): {o['ios']} IOs, span {number(o['span_us'], unit=' us')}",
        f"replay    {r['directory']} ({r['device']}): {r['ios']} IOs, span {number(r['span_us'], unit=' us')}"
        + (f" ({r['left_out_before_start']} IOs before the replay's start left out)"
           if r.get("left_out_before_start") else ""),
        f"acc factor {result['acc_factor']:g}" + (", reads for writes" if result["reads_for_writes"] else ""),
        "",
        f"matched              {result['matched']}",
        f"unmatched original   {result['unmatched_original']}",
        f"unmatched replay     {result['unmatched_replay']}",
    ]
    if result["reads_for_writes"]:
        lines.append(f"expected missing     {result['expected_missing']}  (discard/flush/write-zeroes)")
    lines.append("")
    issue, inter = result["issue_time_error_us"], result["inter_arrival_error_us"]
    if issue is None:
        lines.append("no matched IOs: no timing figures")
    else:
        lines += [
            f"{'':22}{'p50':>12}{'p90':>12}{'p99':>12}{'max':>12}",
            f"{'issue-time error us':22}" + "".join(f"{number(issue[k]):>12}" for k in ("p50", "p90", "p99", "max")),
            f"{'  around the offset':22}{number(result['issue_time_error_around_offset_us']['p50']):>12}{'':>12}"
            f"{number(result['issue_time_error_around_offset_us']['p99']):>12}   (median offset "
            f"{number(result['issue_time_offset_us'])} us)",
            f"{'inter-arrival err us':22}{number(inter['p50']):>12}{'':>12}{number(inter['p99']):>12}",
            "",
            f"IOPS error (MAPE, {result['iops']['buckets']} x 100 ms buckets)  "
            + ("-" if result["iops"]["mape_pct"] is None else f"{result['iops']['mape_pct']:.2f} %"),
            "span ratio           " + ("-" if result["span_ratio"] is None else f"{result['span_ratio']:.4f}"),
        ]
    return "\n".join(lines) + "\n"
