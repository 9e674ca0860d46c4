"""The converter's column path (strided copies, translate tables, full bunches found many at once) writes the
same bytes as its reference path (IO by IO bunch cuts, one ``struct.pack`` per bunch), in both formats.

Random Q events (every op and flag, empty and data flushes, write-zeroes in v8, times with gaps around ``-m``,
equal times, and for btrecord's format times that step back, zero times before genesis and inversions below
it) are cut into chunks at random places, as the trace reader cuts them, and converted with each path; the
replay files, the summaries and the errors (text and byte offset) must be equal. Bunch limits cover both
layouts of full bunches (``-M`` up to 16: strided; above: joined).
"""

import random

import pytest

from blkfleet.errors import TraceFormatError
from blkfleet.record.convert import STRIDED_MAX, CompatConverter, NativeConverter
from blkfleet.record.summary import FileSummary
from blkfleet.replayfile import compat, native
from blkfleet.trace.actions import (
    C_AHEAD,
    C_DISCARD,
    C_FLUSH,
    C_FUA,
    C_META,
    C_QUEUE,
    C_READ,
    C_SYNC,
    C_WRITE,
    C_WRITE_ZEROES,
)
from blkfleet.trace.queued import QueuedChunk
from helpers.synth import rec, write_trace

CASES = 400
Q = 1 | C_QUEUE
ACTIONS_V7 = [Q | C_READ | C_SYNC, Q | C_WRITE | C_SYNC, Q | C_WRITE | C_FUA, Q | C_READ | C_AHEAD,
              Q | C_READ | C_META, Q | C_WRITE | C_DISCARD, Q | C_READ | C_FLUSH, Q | C_WRITE | C_FLUSH | C_FUA,
              Q | C_WRITE | C_FLUSH | C_DISCARD, Q | C_WRITE, Q | C_READ]
ACTIONS_V8 = ACTIONS_V7 + [Q | C_WRITE | C_WRITE_ZEROES, Q | C_WRITE_ZEROES | C_DISCARD | C_FLUSH]


def random_ios(rng, n, version, fmt):
    """(time, sector, nbytes, action, pid) rows: mostly rising times with gaps near -m, some equal."""
    actions = ACTIONS_V8 if version == 8 else ACTIONS_V7
    uniform = rng.random() < 0.5
    t = rng.choice([0, 1, 10**9, (1 << 63) - 10**12])
    rows = []
    zeros = rng.randrange(3) if fmt == "btrecord" else 0
    for i in range(n):
        step = rng.choice([0, 1, 1000, 50_000, 1_000_000, 9_999_999, 10_000_000, 10_000_001, 40_000_000])
        t += step
        time = t
        if fmt == "btrecord":
            if i < zeros:
                time = 0
            elif rng.random() < 0.04:
                time = max(t - rng.randrange(1, 30_000_000), 0)  # backwards (maybe below genesis)
        action = rng.choice(actions)
        nbytes = 4096 if uniform else rng.choice([0, 512, 4096, 65536, 1 << 20, 0xFFFFFFFF])
        if action & C_FLUSH and rng.random() < 0.5:
            nbytes = 0
        rows.append((time, rng.randrange(1 << rng.choice([8, 30, 50])), nbytes, action, rng.randrange(1 << 32)))
    return rows


def convert(tmp_path, fmt, rows, version, cuts, max_time, max_pkts, fast):
    """Convert ``rows`` fed as chunks cut at ``cuts``: (file bytes, summary fields, error or None)."""
    trace = tmp_path / "sda.blktrace.0"
    write_trace(trace, [rec(t, s, n, a, pid=p, version=version) for t, s, n, a, p in rows], version=version)
    out = tmp_path / f"out-{fast}"
    summary = FileSummary("sda", 0, str(trace), str(out), fmt)
    bounds = [0, *cuts, len(rows)]
    chunks = [QueuedChunk.from_rows(rows[a:b], version) for a, b in zip(bounds, bounds[1:])]
    error = None
    if fmt == "native":
        writer = native.NativeWriter(str(out), 0x700004, 0, max_pkts)
        try:
            NativeConverter(writer, summary, max_time, max_pkts, str(trace), fast=fast).run(chunks)
        except TraceFormatError as e:
            error = str(e)
        writer.close()
    else:
        writer = compat.BtrecordWriter(str(out))
        try:
            CompatConverter(writer, summary, max_time, max_pkts, str(trace), fast=fast).run(chunks)
        except TraceFormatError as e:
            error = str(e)
        writer.close(finalize=error is None)
    fields = (summary.ios, summary.bunches, summary.first_time, summary.last_time, summary.by_op)
    return out.read_bytes(), (fields if error is None else None), error


@pytest.mark.parametrize("fmt", ["native", "btrecord"])
def test_column_path_equals_reference_path(tmp_path, fmt):
    errors = strided = joined = 0
    for case in range(CASES):
        rng = random.Random(f"{fmt}-{case}")
        version = 8 if rng.random() < 0.2 else 7
        n = rng.choice([1, 2, 7, 40, 300, 1200])
        rows = random_ios(rng, n, version, fmt)
        i = rng.randrange(1, n) if n > 1 else 0
        if fmt == "native" and rows[i - 1][0] and rng.random() < 0.25:  # one IO earlier than the one before it
            rows[i] = (rows[i - 1][0] - 1, *rows[i][1:])
        cuts = sorted(rng.sample(range(1, n), min(n - 1, rng.randrange(6)))) if n > 1 else []
        max_pkts = rng.choice([1, 2, 3, 8, 16, 17, 64, 512 if fmt == "btrecord" else 4096])
        max_time = rng.choice([1, 1000, 10_000_000, 0xFFFFFFFF])
        if fmt == "btrecord" and rng.random() < 0.1:
            max_time = (1 << 64) - 1
        fast = convert(tmp_path, fmt, rows, version, cuts, max_time, max_pkts, True)
        slow = convert(tmp_path, fmt, rows, version, cuts, max_time, max_pkts, False)
        assert fast == slow, (case, version, n, cuts, max_pkts, max_time)
        errors += fast[2] is not None
        strided += max_pkts <= STRIDED_MAX and n >= 4 * max_pkts
        joined += max_pkts > STRIDED_MAX
    assert CASES // 20 < errors < CASES // 2, errors  # both outcomes, many times
    assert strided > CASES // 10 and joined > CASES // 10, (strided, joined)
