"""``record`` checks the trace files against the capture's own account (capture.json) when it is there: a trace
cut short is refused (exit 2, one line, no replay file left) unless ``--accept-missing``, which converts it and
reports the shortfall in ``record --json`` and, through ``bundle create --record-json``, in the manifest."""

import json
import os
import shutil
import subprocess
import time

import pytest

from blkfleet.bundle import pack
from blkfleet.capture import tracefs
from blkfleet.trace import TraceReader
from blkfleet.trace.actions import is_queue
from helpers.synth import Q_READ, Q_WRITE, capture_state, fails, rec, run_cli, typical_records, write_trace

MODES = {"native": [], "compat": ["--compat"]}


def cut_at_record(path, n):
    """Truncate a trace file after its n-th record (what a fetch stopped by ENOSPC leaves); returns the Q records
    kept (the capture records completions too)."""
    queued = 0
    with TraceReader(str(path)) as reader:
        for i, record in enumerate(reader):
            if i == n:
                end = reader.offset
                break
            queued += is_queue(record.action)
    os.truncate(path, end)
    return queued


# ----------------------------------------------------------------------------- a real capture, truncated

def start_capture(dev, out, attempts=120):
    """``blkfleet capture start``; the machine's one ftrace tracer may be busy with another capture: wait."""
    for _ in range(attempts):
        lock = tracefs.TracerLock().acquire(timeout=600)
        try:
            tracefs.recover_tracer(lock=lock)
        finally:
            lock.release()
        run = run_cli("capture", "start", "-d", dev, "-D", out, "--force")
        if run.returncode == 0:
            return json.loads(run.stdout)
        assert "in use" in run.stderr, run.stderr
        time.sleep(1)
    pytest.fail("the tracer stayed busy")


@pytest.fixture(scope="module")
def real_capture(tmp_path_factory):
    """3000 4 KiB reads on a loop device captured by ``blkfleet capture start/stop`` (the default backend)."""
    if os.geteuid() != 0 or not shutil.which("fio") or not shutil.which("losetup"):
        pytest.skip("needs root, fio and losetup")
    work = tmp_path_factory.mktemp("cap")
    backing = work / "disk.img"
    with open(backing, "wb") as f:
        f.truncate(64 << 20)
    dev = subprocess.run(["losetup", "--show", "-f", str(backing)], capture_output=True, text=True,
                         check=True).stdout.strip()
    out = work / "trace"
    try:
        start_capture(dev, out)
        try:
            subprocess.run(["fio", "--name=r", f"--filename={dev}", "--direct=1", "--ioengine=libaio", "--bs=4k",
                            "--rw=randread", "--iodepth=8", "--size=32M", "--number_ios=3000", "--output=/dev/null"],
                           check=True)
        finally:
            stopped = run_cli("capture", "stop", "-D", out)
        assert stopped.returncode == 0, stopped.stderr
        summary = json.loads(stopped.stdout)
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)
    name = os.path.basename(dev)
    assert summary["devices"][name]["queued"] == 3000
    return out, name, summary


def copy_of(real_capture, tmp_path):
    out, name, summary = real_capture
    copy = tmp_path / "fetched"
    shutil.copytree(out, copy)
    biggest = max(summary["devices"][name]["files"], key=lambda f: summary["devices"][name]["files"][f]["queued"])
    return copy, name, summary, biggest


@pytest.mark.root
@pytest.mark.parametrize("mode", MODES)
def test_a_complete_capture_is_checked_and_said_so(real_capture, tmp_path, mode):
    out, name, summary = real_capture
    dest = tmp_path / "replay"
    dest.mkdir()
    result = run_cli("record", *MODES[mode], "-q", "-d", out, "-D", dest, "--json", tmp_path / "rec.json", name)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    capture = json.loads((tmp_path / "rec.json").read_text())["capture"]
    assert capture == {"complete": True, "accepted_missing": False, "expected": {"ios": 3000, "bytes": 3000 * 4096},
                       "found": {"ios": 3000, "bytes": 3000 * 4096}, "shortfall": [], "problem": None}


@pytest.mark.root
@pytest.mark.parametrize("mode", MODES)
def test_a_trace_cut_at_512_records_is_refused(real_capture, tmp_path, mode):
    """The reproduction: a fetched copy of a real capture with one file cut at 512 records was converted
    without complaint (2060 of 3000 IOs)."""
    copy, name, summary, biggest = copy_of(real_capture, tmp_path)
    cut_at_record(copy / biggest, 512)
    dest = tmp_path / "replay"
    dest.mkdir()
    line = fails(run_cli("record", *MODES[mode], "-d", copy, "-D", dest, name), copy / biggest,
                    "capture.json says the capture wrote", "--accept-missing")
    assert f"{512 * 48} bytes" in line
    assert os.listdir(dest) == []  # checked before anything is written


@pytest.mark.root
@pytest.mark.parametrize("mode", MODES)
def test_accept_missing_records_the_shortfall_in_the_summary_and_the_manifest(real_capture, tmp_path, mode):
    copy, name, summary, biggest = copy_of(real_capture, tmp_path)
    kept = cut_at_record(copy / biggest, 512)
    dest = tmp_path / "replay"
    dest.mkdir()
    rec_json = tmp_path / "rec.json"
    result = run_cli("record", *MODES[mode], "-q", "--accept-missing", "-d", copy, "-D", dest, "--json", rec_json,
                     name)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("blkfleet: warning: ") and result.stderr.count("\n") == 1
    expected_file = summary["devices"][name]["files"][biggest]
    found = 3000 - expected_file["queued"] + kept
    assert f"{found} of 3000 queued IOs" in result.stderr
    capture = json.loads(rec_json.read_text())["capture"]
    assert capture["complete"] is False and capture["accepted_missing"] is True
    assert capture["expected"] == {"ios": 3000, "bytes": 3000 * 4096}
    assert capture["found"] == {"ios": found, "bytes": found * 4096}
    assert capture["shortfall"] == [{
        "file": biggest, "expected_ios": expected_file["queued"], "ios": kept,
        "expected_bytes": expected_file["bytes"], "bytes": kept * 4096,
        "expected_file_bytes": expected_file["file_bytes"], "file_bytes": 512 * 48}]
    bundle = tmp_path / "b.bundle"
    made = run_cli("bundle", "create", "-d", dest, "-o", bundle, "--record-json", rec_json, name)
    assert made.returncode == 0, made.stderr
    manifest = pack.verify(str(bundle))
    assert manifest["format_version"] == 2 and manifest["record"]["capture"] == capture
    assert manifest["totals"]["ios"] == found


@pytest.mark.root
def test_an_empty_capture_json_is_refused(real_capture, tmp_path):
    """A fetch that hit ENOSPC also left an empty capture.json: the files cannot be vouched for."""
    copy, name, _summary, _biggest = copy_of(real_capture, tmp_path)
    (copy / "capture.json").write_bytes(b"")
    dest = tmp_path / "replay"
    dest.mkdir()
    fails(run_cli("record", "-d", copy, "-D", dest, name), "capture.json", "not valid JSON",
             "cannot be checked")
    result = run_cli("record", "-q", "--accept-missing", "-d", copy, "-D", dest, "--json", "-", name)
    assert result.returncode == 0 and "converted without checking" in result.stderr
    capture = json.loads(result.stdout)["result"]["capture"]
    assert capture["complete"] is False and capture["expected"] is None and "not valid JSON" in capture["problem"]


# -------------------------------------------------------------------------------- synthetic capture.json

@pytest.fixture
def trace(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for cpu in (0, 1):
        write_trace(src / f"sda.blktrace.{cpu}", typical_records(4, cpu=cpu))
    files = {f"sda.blktrace.{c}": (4, 4 * 4096, (src / f"sda.blktrace.{c}").stat().st_size) for c in (0, 1)}
    return src, out, files


@pytest.mark.parametrize("where", ["summary", "top", "flat"])
def test_matching_counters_pass_wherever_they_are(trace, where):
    src, out, files = trace
    (src / "capture.json").write_text(json.dumps(capture_state(files, where)))
    result = run_cli("record", "-q", "-d", src, "-D", out, "--json", "-", "sda")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"]["capture"]["complete"] is True


def test_no_capture_json_no_check(trace):
    src, out, _files = trace
    result = run_cli("record", "-q", "-d", src, "-D", out, "--json", "-", "sda")
    assert result.returncode == 0 and json.loads(result.stdout)["result"]["capture"] is None


@pytest.mark.parametrize("mode", MODES)
def test_same_size_other_content_is_refused_after_conversion(trace, mode):
    """Counters checked after conversion: a file of the right size whose IOs differ; no replay file is left."""
    src, out, files = trace
    recs = typical_records(4, cpu=1)
    recs[6] = recs[6]._replace(action=0x00190004)  # the second Q becomes a G: same size, one IO fewer
    write_trace(src / "sda.blktrace.1", recs)
    (src / "capture.json").write_text(json.dumps(capture_state(files)))
    fails(run_cli("record", *MODES[mode], "-d", src, "-D", out, "sda"), "sda.blktrace.1", "3 queued IOs",
             "capture.json says 4")
    assert sorted(os.listdir(out)) == ["sda.replay.0"]  # the good file before it stays, the bad one is not written


def test_a_missing_file_is_refused(trace):
    src, out, files = trace
    files["sda.blktrace.2"] = (4, 4 * 4096, 1000)
    (src / "capture.json").write_text(json.dumps(capture_state(files)))
    fails(run_cli("record", "-d", src, "-D", out, "sda"), "sda.blktrace.2: missing, capture.json says the capture "
             "wrote 1000 bytes (4 queued IOs)")
    result = run_cli("record", "-q", "--accept-missing", "-d", src, "-D", out, "--json", "-", "sda")
    assert result.returncode == 0
    shortfall = json.loads(result.stdout)["result"]["capture"]["shortfall"]
    assert shortfall == [{"file": "sda.blktrace.2", "expected_ios": 4, "ios": None, "expected_bytes": 4 * 4096,
                          "bytes": None, "expected_file_bytes": 1000, "file_bytes": None}]


def test_a_file_capture_json_does_not_list_is_refused(trace):
    src, out, files = trace
    del files["sda.blktrace.1"]
    (src / "capture.json").write_text(json.dumps(capture_state(files)))
    fails(run_cli("record", "-d", src, "-D", out, "sda"), "sda.blktrace.1", "capture.json does not list this file")
    (src / "sda.blktrace.1").write_bytes(b"")  # an idle CPU's empty file is fine
    assert run_cli("record", "-q", "-d", src, "-D", out, "sda").returncode == 0


def test_a_running_capture_is_refused(trace):
    src, out, _files = trace
    (src / "capture.json").write_text(json.dumps({"state": "running", "pid": 1, "devices": ["sda"]}))
    fails(run_cli("record", "-d", src, "-D", out, "sda"), "no per-file counters", "has not stopped")
    assert os.listdir(out) == []


@pytest.mark.parametrize("content, message", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (b"\xff\xfe", "not UTF-8"),
    ('{"summary": {"devices": {"sda": {"files": {"sda.blktrace.0": {"queued": "4"}}}}}}', "are not valid"),
    ('{"summary": {"devices": {"sda": {"files": {"sda.blktrace.0": {"queued": -1, "bytes": 0, "file_bytes": 0}}}}}}',
     "-1 is less than 0"),
    ('{"summary": {"devices": {"sda": {"files": {"../../etc/passwd": {"queued": 0, "bytes": 0, "file_bytes": 0}}}}}}',
     "not a DEV.blktrace.N name"),
    ('{"summary": {"devices": {"sda": {"files": {"sda.blktrace.0": {"queued": 1e400, "bytes": 0, "file_bytes": 0}}}}}}',
     "not a JSON number"),
    ('[]', "no per-file counters"),
], ids=["deep", "utf8", "string", "negative", "name", "infinite", "list"])
def test_bad_capture_json(trace, content, message):
    src, out, _files = trace
    (src / "capture.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    fails(run_cli("record", "-d", src, "-D", out, "sda"), "capture.json", message, "--accept-missing")
    assert os.listdir(out) == []


def test_capture_json_is_not_followed_through_a_link(trace, tmp_path):
    src, out, files = trace
    (tmp_path / "elsewhere.json").write_text(json.dumps(capture_state(files)))
    (src / "capture.json").symlink_to(tmp_path / "elsewhere.json")
    fails(run_cli("record", "-d", src, "-D", out, "sda"), "capture.json", "cannot be checked")


def test_other_devices_of_the_capture_do_not_count(trace):
    src, out, files = trace
    write_trace(src / "sdb.blktrace.0", [rec(1000, 8, action=Q_WRITE), rec(2000, 16, action=Q_READ)])
    files["sdb.blktrace.0"] = (99, 0, 5)  # wrong, but sdb is not recorded
    (src / "capture.json").write_text(json.dumps(capture_state(files)))
    result = run_cli("record", "-q", "-d", src, "-D", out, "--json", "-", "sda")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"]["capture"]["expected"] == {"ios": 8, "bytes": 8 * 4096}
    fails(run_cli("record", "-d", src, "-D", out, "sdb"), "sdb.blktrace.0")
