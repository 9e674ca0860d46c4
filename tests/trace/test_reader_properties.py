"""Property-based and fuzz tests of the trace reader and the fast Q selection.

(a) Valid record streams (protocol v7 and v8, both byte orders, every kind of action, PDUs of 0..64 bytes)
    written with TraceWriter read back field for field, and ``queued_ios`` gives exactly the Q events of the
    filtered TraceReader output, also with tiny read chunks so that records are cut at chunk boundaries.
(b) Garbage and corrupted streams (bit flips, truncation anywhere, inserted or deleted bytes, bad PDU
    lengths) either read or fail with TraceFormatError naming the file and an offset inside it, never with
    another exception and never hanging; ``queued_ios`` then yields the same Q events before failing at the
    same place as TraceReader.

Every hypothesis test is wrapped so that it asserts how many inputs it really ran; the totals are in
``EXAMPLES`` (more than 10,000 generated inputs), plus the exhaustive truncation sweep.
"""

import contextlib
import gc
import random
import signal
import struct
import sys
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blkfleet.trace.queued as queued_mod
import blkfleet.trace.reader as reader_mod
from blkfleet.errors import TraceFormatError
from blkfleet.trace import TraceReader, TraceRecord, TraceWriter
from blkfleet.trace.actions import C_NOTIFY, C_QUEUE, CGROUP_FLAG, is_queue
from blkfleet.trace.queued import queued_ios
from blkfleet.trace.record import HEADER_SIZE, MAGIC
from helpers.synth import encode, offsets, rec, typical_records

U16, U32, U64 = (1 << 16) - 1, (1 << 32) - 1, (1 << 64) - 1

# Hypothesis examples per test; together well above 10,000 generated inputs (see test_example_budget).
EXAMPLES = {
    "roundtrip": 2500,
    "corrupted": 3000,
    "garbage": 3000,
    "record_shaped_garbage": 2000,
}
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PER_INPUT_SECONDS = 10  # a single input taking longer than this counts as a hang


# --------------------------------------------------------------------------------------------------- guards

class Hang(Exception):
    """Raised by the alarm when reading one input takes too long."""


@contextlib.contextmanager
def time_limit(seconds=PER_INPUT_SECONDS):
    def on_alarm(signum, frame):
        raise Hang(f"reading one input took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def chunks(sizes):
    """Set module read sizes, e.g. {"reader.CHUNK": 7, "queued.WINDOW": 80} (monkeypatch, per example)."""
    mods = {"reader": reader_mod, "queued": queued_mod}
    targets = [(mods[k.split(".")[0]], k.split(".")[1], v) for k, v in sizes.items()]
    saved = [(m, name, getattr(m, name)) for m, name, _ in targets]
    for m, name, value in targets:
        setattr(m, name, value)
    try:
        yield
    finally:
        for m, name, value in saved:
            setattr(m, name, value)


DEFAULT_CHUNKS = {}
# queued_ios reads CHUNK bytes at a time and walks them in windows of WINDOW bytes (MIN_WINDOW after an
# irregular record). The window must hold a record of the fast path (48 + 24 bytes) to make progress, so the
# tests shrink it down to 72 bytes; CHUNK, like the reader's, goes down to 7 bytes.
MIN_TEST_WINDOW = 48 + 24


def chunk_sizes(seed):
    """Small read sizes derived from one integer (one hypothesis draw instead of four)."""
    return {
        "reader.CHUNK": 7 + seed % 194,  # 7..200
        "queued.CHUNK": 7 + (seed >> 8) % 194,
        "queued.WINDOW": MIN_TEST_WINDOW + (seed >> 16) % 229,
        "queued.MIN_WINDOW": MIN_TEST_WINDOW + (seed >> 24) % 229,
    }


tiny_chunks = st.integers(0, U32).map(chunk_sizes)
maybe_tiny_chunks = st.one_of(st.just(DEFAULT_CHUNKS), tiny_chunks)


def q_tuple(r):
    return r.time, r.sector, r.bytes, r.action, r.pid


def read_all(path):
    """TraceReader's records, the offset of each, and the TraceFormatError (or None) that ended the file."""
    records, offs = [], []
    with TraceReader(path) as reader:
        try:
            for r in reader:
                records.append(r)
                offs.append(reader.offset)
        except TraceFormatError as e:
            return records, offs, e, reader
    return records, offs, None, reader


def queued_all(path):
    out = []
    try:
        for q in queued_ios(path):
            out.append(tuple(q))
    except TraceFormatError as e:
        return out, e
    return out, None


def check_error(err, path, size):
    """A TraceFormatError names the file and an offset inside it, on one line."""
    assert err.path == str(path)
    assert isinstance(err.offset, int) and 0 <= err.offset < size, (err.offset, size, str(err))
    text = str(err)
    assert text.startswith(f"{path}: offset {err.offset}: ")
    assert err.problem and "\n" not in text


def check_robust(path, data):
    """Read ``path`` (holding ``data``) with both readers; return TraceReader's records and error."""
    size = len(data)
    with time_limit():
        records, offs, err, reader = read_all(path)
        qs, qerr = queued_all(path)
    # Bounded: a record is at least a 48-byte header.
    assert len(records) <= size // 48
    if err is not None:
        check_error(err, path, size)
    if qerr is not None:
        check_error(qerr, path, size)
    # queued_ios gives exactly what filtering TraceReader gives, and fails where TraceReader fails.
    assert qs == [q_tuple(r) for r in records if is_queue(r.action)]
    assert (err is None) == (qerr is None), (err, qerr)
    if err is not None:
        assert (qerr.offset, qerr.problem) == (err.offset, err.problem)
    # Records are back to back from offset 0; a file read without error is consumed to its last byte.
    if records:
        hsize = HEADER_SIZE[reader.version]
        assert offs[0] == 0
        for prev, here, r in zip(offs, offs[1:], records):
            assert here == prev + hsize + len(r.pdu)
        end = offs[-1] + hsize + len(records[-1].pdu)
        # Without error the file is consumed to its last byte; else the error is at the next record.
        assert end == (size if err is None else err.offset)
    elif err is None:
        assert size == 0
    else:
        assert err.offset == 0
    return records, err


# ----------------------------------------------------------------------------------------------- strategies

# Inputs are decoded from one hypothesis byte string each (like a fuzzer's data provider): a single draw is
# cheap, so tens of thousands of inputs fit in the time budget, and hypothesis still shrinks them.

class Provider:
    """Consume a byte string as a source of choices; past its end every choice is 0."""

    def __init__(self, blob):
        self.blob, self.i = blob, 0

    def more(self):
        return self.i < len(self.blob)

    def take(self, n):
        chunk = self.blob[self.i:self.i + n]
        self.i += n
        return chunk.ljust(n, b"\0")

    def u8(self):
        return self.take(1)[0]

    def uint(self, nbytes):
        return int.from_bytes(self.take(nbytes), "little")


NEAR_Q_LOW16 = (0x0001, 0x0101, 0x0201, 0x8001, 0x0100, 0x0011, 0x1001, 0x0000, 0x00FF)
KERNEL_BASES = [0x00100001 + i for i in range(16)] + [0x00200006, 0x00400007, 0x00800008, 0x0000000D, 0x0000000E,
                                                      0x40000011]
TYPICAL_Q = (0x00190001, 0x08110001, 0x001A0001, 0x801A0001, 0x001E0001, 0x201A0001, 0x00190101)
_SCALARS = struct.Struct("<QQIIIIIH")  # time sector bytes pid device cpu sequence error


def action_word(p, version):
    """Q events (random categories, QUEUE bit forced or not, cgroup flag or not), near-Q low halves, kernel
    base values, notifies, typical kernel Qs, or any value of the field's width."""
    width = 4 if version == 7 else 8
    kind = p.u8() % 6
    cats = p.uint(width - 2) << 16
    flags = p.u8()
    cgroup = CGROUP_FLAG if flags & 1 else 0
    if kind == 0:
        return cats | (C_QUEUE if flags & 2 else 0) | 1 | cgroup
    if kind == 1:
        return cats | C_QUEUE | NEAR_Q_LOW16[flags % len(NEAR_Q_LOW16)]
    if kind == 2:
        return KERNEL_BASES[flags % len(KERNEL_BASES)] | (cats if flags & 2 else 0) | cgroup
    if kind == 3:
        return C_NOTIFY | (flags >> 1) % 4 | cgroup
    if kind == 4:
        return TYPICAL_Q[flags % len(TYPICAL_Q)]
    return p.uint(width)


def scalars(p):
    mode = p.u8() % 4
    if mode == 0:
        return _SCALARS.unpack(bytes(_SCALARS.size))
    if mode == 1:
        return _SCALARS.unpack(b"\xff" * _SCALARS.size)
    if mode == 2:
        return tuple(p.u8() for _ in range(8))
    return _SCALARS.unpack(p.take(_SCALARS.size))


def decode_stream(blob, max_records=16):
    """(version, byte order, records) of a valid stream: v7/v8, either order, PDUs of 0..64 bytes."""
    p = Provider(blob)
    head = p.u8()
    version, order = 7 + (head & 1), "<>"[head >> 1 & 1]
    recs = []
    while p.more() and len(recs) < max_records:
        action = action_word(p, version)
        sel = p.u8()
        pdu_len = (0, 8, 16)[sel % 3] if sel < 160 else sel % 65
        pdu = p.take(pdu_len)
        if action & CGROUP_FLAG and sel & 64 and pdu_len < 8:
            pdu = p.take(8) + pdu  # cgroup id first, as the kernel does
        time, sector, nbytes, pid, device, cpu, seq, error = scalars(p)
        recs.append(TraceRecord(time, sector, nbytes, action, pid, device, cpu, error, pdu, seq, version))
    return version, order, recs


def sized(max_size):
    """Byte strings of a length drawn uniformly-ish up to ``max_size`` (plain st.binary stays very short)."""
    return st.integers(0, max_size).flatmap(lambda n: st.binary(min_size=n, max_size=n))


blobs = sized(1500)


# ---------------------------------------------------------------------------------------------- (a) valid

def test_valid_streams_round_trip(tmp_path):
    path = tmp_path / "sda.blktrace.0"
    count = [0]

    @settings(max_examples=EXAMPLES["roundtrip"], **SETTINGS)
    @given(blobs, tiny_chunks)
    def body(blob, small):
        count[0] += 1
        version, order, recs = decode_stream(blob)
        data = encode(recs, version, order)
        path.write_bytes(data)
        expected_q = [q_tuple(r) for r in recs if is_queue(r.action)]
        for sizes in (DEFAULT_CHUNKS, small):
            with chunks(sizes), time_limit():
                got, offs, err, reader = read_all(path)
                qs, qerr = queued_all(path)
            assert err is None and qerr is None, (err, qerr)
            assert got == recs  # every field: time .. sequence, pdu and version
            assert offs == offsets(recs, version)
            if recs:
                assert (reader.byteorder, reader.version) == (order, version)
            assert qs == expected_q
            assert qs == [q_tuple(r) for r in got if is_queue(r.action)]

    body()
    assert count[0] >= EXAMPLES["roundtrip"]


def test_cgroup_flagged_q_is_not_selected(tmp_path):
    """The Q selection is btrecord's: code 1 + QUEUE category, without the cgroup flag."""
    path = tmp_path / "sda.blktrace.0"
    recs = [
        TraceRecord(10, 1, 4096, 0x00190001, 1, 2, 0),
        TraceRecord(20, 2, 4096, 0x00190101, 1, 2, 0, 0, b"\1" * 8),
        TraceRecord(30, 3, 4096, 0x00090001, 1, 2, 0),  # code 1 without QUEUE category
        TraceRecord(40, 4, 0, 0x001E0001, 1, 2, 0),  # empty flush Q
    ]
    for version in (7, 8):
        for order in "<>":
            recs_v = [r._replace(version=version) for r in recs]
            path.write_bytes(encode(recs_v, version, order))
            assert [q[0] for q in queued_ios(path)] == [10, 40]


def test_v8_action_high_bits_survive(tmp_path):
    """v8's 64-bit action (zone categories in bits 32..38) is read back whole and still selects the Q."""
    path = tmp_path / "sda.blktrace.0"
    action = (1 << 38) | C_QUEUE | 0x00020001  # WRITE_ZEROES | WRITE | QUEUE, code 1
    r = TraceRecord(5, 6, 7, action, 8, 9, 1, 0, b"", 3, 8)
    for order in "<>":
        path.write_bytes(encode([r], 8, order))
        assert list(TraceReader(path)) == [r]
        assert list(queued_ios(path)) == [(5, 6, 7, action, 8)]


# --------------------------------------------------------------------------------------------- (b) invalid

def corrupt(blob, edits):
    """A valid stream (decoded from ``blob``) damaged by up to 4 edits, each decoded from 4 bytes of ``edits``:
    bit flip, truncation, inserted bytes, deleted bytes, a wrong PDU length or a foreign magic/version."""
    version, order, recs = decode_stream(blob, max_records=10)
    data = bytearray(encode(recs, version, order))
    starts = offsets(recs, version)
    p = Provider(edits)
    for _ in range(1 + p.u8() % 4):
        kind, where, arg = p.u8() % 6, p.uint(2), p.u8()
        n = len(data)
        if kind == 0 and n:
            data[where % n] ^= 1 << arg % 8
        elif kind == 1:
            del data[where % (n + 1):]
        elif kind == 2:
            pos = where % (n + 1)
            data[pos:pos] = p.take(1 + arg % 70)
        elif kind == 3 and n:
            pos = where % n
            del data[pos:pos + 1 + arg % 70]
        elif kind in (4, 5) and starts:
            start = starts[where % len(starts)]
            if kind == 4:  # a wrong payload length
                at, fmt, value = start + (46 if version == 7 else 50), "H", p.uint(2)
            else:
                at, fmt = start, "I"
                value = (MAGIC | 6, MAGIC | 7, MAGIC | 8, MAGIC | 9, 0, U32)[arg % 6]
            if at + struct.calcsize(fmt) <= len(data):
                struct.pack_into(order + fmt, data, at, value)
    return bytes(data)


def test_corrupted_streams_fail_cleanly(tmp_path):
    path = tmp_path / "sda.blktrace.0"
    count = [0]

    @settings(max_examples=EXAMPLES["corrupted"], **SETTINGS)
    @given(sized(1000), sized(40), maybe_tiny_chunks)
    def body(blob, edits, sizes):
        count[0] += 1
        data = corrupt(blob, edits)
        path.write_bytes(data)
        with chunks(sizes):
            check_robust(path, data)

    body()
    assert count[0] >= EXAMPLES["corrupted"]


MAGICS = [struct.pack(o + "I", MAGIC | v) for o in "<>" for v in (7, 8)]


def test_garbage_fails_cleanly(tmp_path):
    path = tmp_path / "sda.blktrace.3"
    count = [0]
    # Pure garbage almost never starts with a magic; half the inputs get a valid first magic.
    garbage = st.one_of(
        sized(400),
        st.builds(lambda m, rest: m + rest, st.sampled_from(MAGICS + [struct.pack("<I", MAGIC | 6)]), sized(400)),
    )

    @settings(max_examples=EXAMPLES["garbage"], **SETTINGS)
    @given(garbage, maybe_tiny_chunks)
    def body(data, sizes):
        count[0] += 1
        path.write_bytes(data)
        with chunks(sizes):
            records, err = check_robust(path, data)
        if data and data[:4] not in MAGICS:
            assert err is not None and err.offset == 0 and not records

    body()
    assert count[0] >= EXAMPLES["garbage"]


def record_shaped(blob):
    """Headers with the right magic and small PDU lengths, all else random, maybe cut: gets far into files."""
    p = Provider(blob)
    head = p.u8()
    version, order = 7 + (head & 1), "<>"[head >> 1 & 1]
    hsize = HEADER_SIZE[version]
    out = b""
    while p.more():
        rec = bytearray(p.take(hsize))
        struct.pack_into(order + "I", rec, 0, MAGIC | version)
        pdu_len = (0, 8, 16, 1, 24, 47, 64)[p.u8() % 7]
        struct.pack_into(order + "H", rec, 46 if version == 7 else 50, pdu_len)
        out += bytes(rec) + p.take(pdu_len)
    return out if head & 4 else out[:len(out) - (head >> 3)]


def test_record_shaped_garbage(tmp_path):
    path = tmp_path / "sda.blktrace.1"
    count = [0]

    @settings(max_examples=EXAMPLES["record_shaped_garbage"], **SETTINGS)
    @given(sized(1200), maybe_tiny_chunks)
    def body(blob, sizes):
        count[0] += 1
        data = record_shaped(blob)
        path.write_bytes(data)
        with chunks(sizes):
            check_robust(path, data)

    body()
    assert count[0] >= EXAMPLES["record_shaped_garbage"]


@pytest.mark.parametrize("version", [7, 8])
@pytest.mark.parametrize("order", ["<", ">"])
def test_truncation_at_every_offset(tmp_path, version, order):
    """Cut a realistic trace at every byte: the complete records are read, then an error at the cut record."""
    path = tmp_path / "sda.blktrace.0"
    recs = [r._replace(version=version) for r in typical_records(4)]
    data = encode(recs, version, order)
    starts = offsets(recs, version)
    for cut in range(len(data) + 1):
        part = data[:cut]
        path.write_bytes(part)
        sizes = DEFAULT_CHUNKS if cut % 2 else {
            "reader.CHUNK": 7 + cut % 61, "queued.CHUNK": 7 + cut % 53,
            "queued.WINDOW": MIN_TEST_WINDOW + cut % 47, "queued.MIN_WINDOW": MIN_TEST_WINDOW + cut % 31,
        }
        with chunks(sizes):
            got, err = check_robust(path, part)
        whole = sum(1 for s, r in zip(starts, recs) if s + HEADER_SIZE[version] + len(r.pdu) <= cut)
        assert got == recs[:whole]
        if cut in starts or cut == len(data):
            assert err is None
        else:
            assert err is not None and err.offset == starts[whole]
            assert err.problem.startswith("truncated")


@pytest.mark.parametrize("chunk", [7, 8, 16, 64, 100, 143])
def test_queued_ios_terminates_with_a_tiny_chunk(tmp_path, chunk):
    """Regression (engine bug in commit 130c544): with queued.CHUNK below ~144 bytes ``_scan_v7`` clamped its
    window to ``CHUNK // 2``, smaller than one record, and then looped forever without reading. The reader
    handles the same chunk sizes."""
    path = tmp_path / "sda.blktrace.0"
    recs = typical_records(4)
    path.write_bytes(encode(recs))
    expected = [q_tuple(r) for r in recs if is_queue(r.action)]
    with chunks({"reader.CHUNK": chunk}), time_limit(2):
        assert [q_tuple(r) for r in TraceReader(path) if is_queue(r.action)] == expected
    with chunks({"queued.CHUNK": chunk}), time_limit(2):
        assert list(queued_ios(path)) == expected


@pytest.mark.parametrize("version", [7, 8])
@pytest.mark.parametrize("tail", ["truncated record", "truncated payload", "bad magic"])
def test_queued_ios_yields_the_ios_before_an_error(tmp_path, version, tail):
    """queued_ios yields every Q event that TraceReader yields before a format error, then fails the same
    way. Engine bug: it collects Qs in a batch (v8: up to 4096 rows from TraceReader; v7 in 130c544: the
    rows of the generic decoder) and raises before yielding that batch, so those Qs are lost."""
    path = tmp_path / "sda.blktrace.0"
    recs = [r._replace(version=version) for r in typical_records(3)]
    # an irregular (1-byte PDU) record puts v7 on the generic decoder as well
    recs.insert(2, recs[1]._replace(pdu=b"x"))
    data = encode(recs, version)
    hsize = HEADER_SIZE[version]
    if tail == "truncated record":
        data += encode(recs[1:2], version)[: hsize - 1]
    elif tail == "truncated payload":
        data += encode([recs[1]._replace(pdu=b"12345678")], version)[:-3]
    else:
        data += bytes(hsize)
    path.write_bytes(data)
    records, _, err, _ = read_all(path)
    qs, qerr = queued_all(path)
    assert err is not None and qerr is not None
    assert (qerr.offset, qerr.problem) == (err.offset, err.problem) == (len(encode(recs, version)), err.problem)
    assert err.problem.startswith(tail)
    assert records == recs
    assert qs == [q_tuple(r) for r in recs if is_queue(r.action)]


@pytest.mark.parametrize("version", [7, 8])
def test_queued_ios_can_be_abandoned(tmp_path, version):
    """A consumer may stop early (``next()`` then close, or break). Engine bug in the working-tree v8 path
    (``yield`` inside ``finally:``): closing it after a full 4096-row batch resumes the ``finally``, which
    yields again -> ``RuntimeError: generator ignored GeneratorExit`` (raised by ``close()``, or printed as
    "Exception ignored" when the generator is collected). Fix: yield the pending rows in
    ``except TraceFormatError: ...; raise`` and after the loop, not in ``finally``."""
    path = tmp_path / "sda.blktrace.0"
    path.write_bytes(encode([rec(1000 + i, 8 * i, version=version) for i in range(5000)], version))
    unraisable = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        batches = queued_mod.queued_batches(path)
        next(batches)
        batches.close()
        ios = queued_ios(path)
        next(ios)
        ios.close()
        del batches, ios
        gc.collect()
    finally:
        sys.unraisablehook = old_hook
    assert [u.exc_value for u in unraisable] == []


def test_empty_file_is_valid(tmp_path):
    path = tmp_path / "sda.blktrace.5"
    path.write_bytes(b"")
    assert list(TraceReader(path)) == []
    assert list(queued_ios(path)) == []


def test_example_budget():
    """The hypothesis tests above generate more than 10,000 inputs together."""
    assert sum(EXAMPLES.values()) >= 10_000


def test_long_runs_without_q_stay_linear(tmp_path):
    """A CPU file of completions only (common: completions land on the interrupt CPU), with an irregular
    record in the middle and a cut one at the end: the fast path must not rescan runs (it once did, which
    took about a minute for 200 k records); a 30 s alarm turns a regression into a failure, not a hang."""
    path = tmp_path / "sdc.blktrace.1"
    complete = [TraceRecord(1000 + i, i * 8, 4096, 0x01990008, 1, 0x800020, 1) for i in range(60000)]
    odd = TraceRecord(99, 0, 0, 0x04000002, 1, 0x800020, 1, 0, b"m" * 40)  # a message with a 40-byte payload
    with TraceWriter(path) as w:
        for r in complete[:30000] + [odd] + complete[30000:]:
            w.write(r)
    with open(path, "ab") as f:
        f.write(b"\x07tae" + bytes(20))
    with time_limit(30), pytest.raises(TraceFormatError) as err:
        list(queued_ios(path))
    assert err.value.offset == (60000 * 48 + 88)


PATTERNS = {  # the record kinds of one repetition: (action word, payload length)
    "events": [(0x00190001, 0)],
    "raw": [(0x00190001, 0), (0x00190004, 0), (0x00110009, 0), (0x0011000A, 8)],
    "two-q": [(0x001A0001, 0), (0x001A0004, 0), (0x00190001, 0), (0x00190004, 0), (0x0011000A, 8)],
    "q-with-payload": [(0x00190001, 8), (0x00190004, 16)],
}
BREAKS = ["none", "q-for-g", "g-for-q", "cgroup-q", "payload", "magic", "cut", "extra-record"]


def repeated(rng, kinds, periods, version=7):
    return [rec(1000 * i + k, rng.randrange(1 << 40), 4096, action, pdu=bytes(rng.randrange(256) for _ in range(n)),
                cpu=1, pid=rng.randrange(1 << 32), sequence=rng.randrange(1 << 32), version=version)
            for i in range(periods) for k, (action, n) in enumerate(kinds)]


@pytest.mark.parametrize("order", ["<", ">"])
def test_repeated_patterns_equal_the_reader(tmp_path, order):
    """Windows that repeat one pattern of records are selected on strided columns (queued._periodic): the
    result equals filtering TraceReader, also when one record breaks the pattern (another kind, a cgroup flag,
    a payload, a bad magic, an extra record, a cut file), with the normal windows and tiny ones."""
    path = tmp_path / "sda.blktrace.1"
    periodic = [0]
    real = queued_mod._periodic

    def counted(*args):
        found = real(*args)
        periodic[0] += found is not None
        return found

    for case in range(160):
        rng = random.Random(f"{order}-{case}")
        name = rng.choice(sorted(PATTERNS))
        recs = repeated(rng, PATTERNS[name], rng.choice([1, 2, 3, 50, 3000]))
        broken = rng.choice(BREAKS)
        data = bytearray(encode(recs, 7, order))
        at = rng.randrange(len(recs))
        if broken == "q-for-g":
            recs[at] = recs[at]._replace(action=0x00190001)
        elif broken == "g-for-q":
            recs[at] = recs[at]._replace(action=0x00190004)
        elif broken == "cgroup-q":
            recs[at] = recs[at]._replace(action=0x00190101)
        elif broken == "payload":
            recs[at] = recs[at]._replace(pdu=recs[at].pdu + b"12345678")
        elif broken == "extra-record":
            recs.insert(at, recs[at]._replace(action=0x00190004))
        if broken not in ("none", "magic", "cut"):
            data = bytearray(encode(recs, 7, order))
        if broken == "magic":
            data[offsets(recs)[at]] ^= 0x40
        elif broken == "cut":
            del data[rng.randrange(len(data)):]
        path.write_bytes(bytes(data))
        sizes = DEFAULT_CHUNKS if case % 2 else chunk_sizes(rng.randrange(1 << 32))
        with chunks(sizes), time_limit():
            queued_mod._periodic = counted
            try:
                check_robust(path, bytes(data))
            finally:
                queued_mod._periodic = real
    assert periodic[0] > 100, periodic[0]  # the columns path did the work in many windows


@pytest.mark.parametrize("order", "<>")
def test_bare_q_and_c_headers_in_any_order(tmp_path, order):
    """What ``blkfleet capture``'s events mode writes: Q and C records without payload, interleaved in runs and
    one by one (a cgroup-flagged Q and a Q-coded record of another category among them): ``queued_ios`` gives
    exactly the Q events TraceReader gives, whatever the window size."""
    rng = random.Random(7)
    recs, t = [], 0
    kinds = (0x00110001, 0x00810008, 0x00110101, 0x00090001)  # Q, C, Q with the cgroup flag, code 1 not QUEUE
    while len(recs) < 3000:
        kind = rng.choice(kinds[:2]) if rng.random() < 0.97 else rng.choice(kinds[2:])
        for _ in range(rng.choice((1, 1, 2, 8, 32))):
            t += rng.randrange(1, 5000)
            recs.append(TraceRecord(t, rng.randrange(1 << 20) * 8, 4096, kind, 1, 2, 0))
    path = tmp_path / "sda.blktrace.0"
    path.write_bytes(encode(recs, 7, order))
    with TraceReader(path) as r:
        want = [x.time for x in r if is_queue(x.action)]
    assert 1000 < len(want) < 2000
    calls = {"_bare_headers": 0, "_bare_found": 0}

    def counted(name):
        real = getattr(queued_mod, name)

        def call(*args):
            found = real(*args)
            calls[name] += found is not None
            return found
        return call

    for window in (MIN_TEST_WINDOW, 4096, queued_mod.WINDOW):
        with chunks({"queued.WINDOW": window, "queued.MIN_WINDOW": min(window, queued_mod.MIN_WINDOW)}), \
                mock.patch.multiple(queued_mod, **{name: counted(name) for name in calls}):
            assert [q[0] for q in queued_ios(path)] == want
    # Some windows began with a run of Q records (a pattern to _periodic) and went on as bare headers.
    assert calls["_bare_found"] > calls["_bare_headers"] > 0, calls
