"""Fuzz: bundles and what ``bundle create`` reads. Manifests changed structurally (with their id recomputed, so
that a change reaches the checks behind the id) through ``verify``, ``info`` and ``extract``; bundle files
changed as bytes, tar headers included (checksums recomputed); and the ``--record-json`` summary and
``--trace-dir`` files of ``bundle create``. 10,000 cases of each in this process, and a sample as real
processes."""

import io
import json
import random
import tarfile

import pytest

from blkfleet.bundle import manifest as mf
from blkfleet.bundle import pack
from blkfleet.cli import main
from blkfleet.replayfile import native
from helpers.fuzz import CASES, SUBPROCESS_CASES, Fuzz, clear, mutate_bytes, mutate_json, scratch, subprocess_cases

DEVICE = "fz"
ENGINE = b"engine stand-in\n"


@pytest.fixture
def small_engine(monkeypatch):
    monkeypatch.setattr(pack, "engine_bytes", lambda: ENGINE)


def make_inputs(work):
    """Replay files of two CPUs, their record --json summary, a trace directory; and a bundle of them."""
    replay, trace = work / "replay", work / "trace"
    replay.mkdir()
    trace.mkdir()
    for cpu in (0, 1):
        w = native.NativeWriter(str(replay / f"{DEVICE}.replay.{cpu}"), 0x700004, cpu, 64)
        for b in range(3):
            w.add_bunch(1_000_000 * (b + 1), [(2048 + 8 * k, 4096, 100 * k, k % 2, 0, 7) for k in range(4)])
        w.close()
    summary = {"files": [], "capture": None}
    for cpu in (0, 1):
        summary["files"].append({"device": DEVICE, "cpu": cpu, "source": f"/x/{DEVICE}.blktrace.{cpu}",
                                 "output": str(replay / f"{DEVICE}.replay.{cpu}"), "format": "native", "ios": 12,
                                 "bunches": 3, "ops": {"read": {"ios": 6, "bytes": 6 * 4096},
                                                       "write": {"ios": 6, "bytes": 6 * 4096}},
                                 "first_time_ns": 1_000_000, "last_time_ns": 3_000_300, "span_ns": 2_000_300})
    capture = {"host": "src1", "devices": [DEVICE], "state": "stopped",
               "block_devices": {DEVICE: {"dev": "7:4", "size": 1 << 30, "logical_block_size": 512}},
               "summary": {"devices": {DEVICE: {"dev": "7,4", "files": {}, "queued": 24}}}}
    bundle = work / "seed.bundle"
    pack.create(str(bundle), str(replay), (DEVICE,), engine=ENGINE)
    return replay, trace, summary, capture, bundle


def tar_entries(bundle):
    with tarfile.open(bundle) as tar:
        return [(m, tar.extractfile(m).read()) for m in tar]


def write_tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _rehash(m):
    m["bundle_id"] = mf.bundle_id(m)


def bundle_argv(rng, path, work):
    which = rng.random()
    if which < 0.6:
        return ["bundle", "verify", path]
    if which < 0.75:
        return ["bundle", "info", path]
    clear(work / "x")
    return ["bundle", "extract", path, work / "x" / "dest"]


def manifest_case(rng, entries, work):
    info, data = entries[0]
    mutated = mutate_json(json.loads(data), rng, rehash=_rehash)
    members = [(tarfile.TarInfo(info.name), mutated)] + [(e[0], e[1]) for e in entries[1:]]
    if rng.random() < 0.1:
        members = members[:rng.randrange(1, len(members) + 1)]
    path = work / "case.bundle"
    path.write_bytes(write_tar(members))
    return bundle_argv(rng, path, work)


def _headers(data):
    """Offsets of the ustar headers in a tar."""
    return [o for o in range(0, len(data) - 511, 512) if data[o + 257:o + 262] == b"ustar"]


def _fix_checksum(data, offset):
    block = data[offset:offset + 512]
    block[148:156] = b" " * 8
    data[offset + 148:offset + 156] = b"%06o\0 " % sum(block)


TAR_FIELDS = [(0, 100), (100, 8), (124, 12), (136, 12), (148, 8), (156, 1), (157, 100), (257, 6), (345, 155)]
TAR_VALUES = [b"../evil", b"replay/fz.replay.9", b"manifest.json", b"engine.pyz", b"/etc/passwd", b"77777777777",
              b"00000001000", b"99999999999", b"\x80\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff", b"2", b"S",
              b"x", b"g", b"5", b"1", b"L", b"K", b"7", b"", b"\0"]
PAX_RECORDS = [b"30 GNU.sparse.major=1\n", b"30 GNU.sparse.minor=0\n", b"20 size=99999999\n",
               b"30 path=replay/fz.replay.0\n", b"28 GNU.sparse.realsize=64\n", b"12 size=-1\n", b"9 path=\n"]


def tar_case(rng, seed_bytes, work):
    data = bytearray(seed_bytes)
    headers = _headers(data)
    for _ in range(1 + int(rng.expovariate(1.0))):
        kind = rng.random()
        if kind < 0.5:
            offset = rng.choice(headers)
            field, width = rng.choice(TAR_FIELDS)
            value = rng.choice(TAR_VALUES)[:width]
            data[offset + field:offset + field + width] = value.ljust(width, b"\0")
            if rng.random() < 0.8:
                _fix_checksum(data, offset)
        elif kind < 0.65:
            pax = [o for o in headers if data[o + 156:o + 157] in (b"x", b"g")]
            if pax:
                offset = rng.choice(pax) + 512
                record = rng.choice(PAX_RECORDS)
                data[offset:offset + len(record)] = record
        else:
            data = bytearray(mutate_bytes(bytes(data), rng, [(o + f, w) for o in headers for f, w in TAR_FIELDS
                                                               if w in (1, 8)]))
    path = work / "case.bundle"
    path.write_bytes(bytes(data))
    return bundle_argv(rng, path, work)


def create_case(rng, inputs, work):
    replay, trace, summary, capture, _bundle = inputs
    clear(trace)
    argv = ["bundle", "create", "-d", replay, "-o", work / "out.bundle", DEVICE]
    which = rng.random()
    if which < 0.5:
        (work / "rec.json").write_bytes(mutate_json(summary, rng))
        argv += ["--record-json", work / "rec.json"]
    else:
        (trace / "capture.json").write_bytes(mutate_json(capture, rng))
        argv += ["--trace-dir", trace]
    if rng.random() < 0.1:
        argv += ["--source-host", rng.choice(("h", "", "a\nb", "x" * 300))]
    return argv


def _run_kind(kind, tmp_path, make_argv):
    work = scratch(f"fuzz-{kind}-")
    try:
        (work / "x").mkdir()
        inputs = make_inputs(work)
        fuzz = Fuzz(kind, tmp_path / "failures")
        for seed in range(CASES):
            fuzz.case(seed, make_argv(random.Random(f"{kind}-{seed}"), inputs, work), [work])
        assert fuzz.count == CASES and fuzz.outcomes[0] > CASES // 100, fuzz.outcomes
        assert fuzz.outcomes[2] > CASES // 10, fuzz.outcomes
    finally:
        clear(work)
        work.rmdir()


def test_fuzz_manifests(tmp_path, small_engine):
    _run_kind("manifest", tmp_path, lambda rng, inputs, work: manifest_case(rng, tar_entries(inputs[-1]), work))


def test_fuzz_bundle_bytes(tmp_path, small_engine):
    _run_kind("bundle-bytes", tmp_path, lambda rng, inputs, work: tar_case(rng, inputs[-1].read_bytes(), work))


def test_fuzz_bundle_create_inputs(tmp_path, small_engine):
    _run_kind("bundle-create", tmp_path, create_case)


@pytest.mark.parametrize("kind", ["manifest", "bundle-bytes", "bundle-create"])
def test_fuzz_bundles_as_processes(kind, tmp_path, small_engine):
    cases = []
    for seed in range(SUBPROCESS_CASES):
        rng = random.Random(f"{kind}-process-{seed}")
        work = tmp_path / f"c{seed}"
        (work / "x").mkdir(parents=True)
        inputs = make_inputs(work)
        if kind == "manifest":
            argv = manifest_case(rng, tar_entries(inputs[-1]), work)
        elif kind == "bundle-bytes":
            argv = tar_case(rng, inputs[-1].read_bytes(), work)
        else:
            argv = create_case(rng, inputs, work)
        cases.append((f"{kind} process case {seed}", argv))
    assert subprocess_cases(cases) == []


def test_the_seeds_are_accepted(tmp_path, small_engine):
    """Unchanged, every seed input passes (so the cases start from the good path)."""
    inputs = make_inputs(tmp_path)
    replay, trace, summary, capture, bundle = inputs
    assert main(["bundle", "verify", str(bundle)]) == 0
    (tmp_path / "rec.json").write_text(json.dumps(summary))
    (trace / "capture.json").write_text(json.dumps(capture))
    assert main(["bundle", "create", "-d", str(replay), "-o", str(tmp_path / "o"), "--record-json",
                 str(tmp_path / "rec.json"), "--trace-dir", str(trace), DEVICE]) == 0
    assert pack.read_manifest(str(tmp_path / "o"))["devices"][0]["size"] == 1 << 30
