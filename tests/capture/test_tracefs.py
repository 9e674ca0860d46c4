"""The ftrace blk tracer backend: unit checks, then real captures on loop devices (root)."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from blkfleet.capture import tracefs
from blkfleet.capture.ftrace import BlkTracerCapture
from blkfleet.errors import BlkfleetError

ENGINE = os.path.join(os.path.dirname(__file__), "..", "..", "engine")


def test_act_mask_value():
    assert tracefs.act_mask_value("queue") == 0x10
    assert tracefs.act_mask_value("queue, complete") == 0x90
    assert tracefs.act_mask_value("fs,discard") == 0x2100
    assert tracefs.act_mask_value("all") == 0xFFFF
    assert tracefs.act_mask_value(0x41) == 0x41
    with pytest.raises(BlkfleetError, match="unknown act_mask category 'zone_open'"):
        tracefs.act_mask_value("zone_open")
    with pytest.raises(BlkfleetError, match="at least one"):
        tracefs.act_mask_value("")


def test_lock_is_exclusive(tmp_path):
    path = str(tmp_path / "ftrace.lock")
    with tracefs.TracerLock(path) as first:
        assert first.held
        with pytest.raises(tracefs.TracerBusy, match=f"pid {os.getpid()} holds {path}"):
            tracefs.TracerLock(path).acquire(timeout=0.2)
    with tracefs.TracerLock(path):
        pass


def test_non_root_is_refused(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(BlkfleetError, match="needs root"):
        tracefs.configure(["loop0"])


def test_missing_device():
    with pytest.raises(BlkfleetError, match="no such block device: nosuchdisk9"):
        tracefs.device_trace_dir("nosuchdisk9")
    with pytest.raises(BlkfleetError, match="no such block device: /dev/nonexistent-disk"):
        tracefs.device_trace_dir("/dev/nonexistent-disk")


def fake_tracefs(root, buffer="7 (expanded: 1408)"):
    files = {
        "tracing_on": "1",
        "current_tracer": "nop",
        "trace_clock": "[local] global mono",
        "buffer_size_kb": buffer,
        "per_cpu/cpu0/buffer_size_kb": "1408",
        "per_cpu/cpu1/buffer_size_kb": "2048",
        "options/bin": "0",
        "options/context-info": "1",
        "options/blk_cgroup": "0",
        "trace": "",
        "dev/enable": "1",
        "dev/act_mask": "read,write,queue",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def test_state_snapshot_and_restore(tmp_path):
    fake_tracefs(tmp_path)
    state = tracefs.TracerState.snapshot(str(tmp_path), [str(tmp_path / "dev")])
    assert state.values["buffer_size_kb"] == "1408"
    assert state.values["trace_clock"] == "local"
    assert "options/overwrite" not in state.values
    assert state.devices[str(tmp_path / "dev")] == {"enable": "1", "act_mask": "read,write,queue"}
    saved = tmp_path / "state.json"
    state.save(str(saved))
    for rel, text in [("tracing_on", "0"), ("current_tracer", "blk"), ("options/bin", "1"),
                      ("trace_clock", "local [mono]"), ("dev/act_mask", "queue")]:
        (tmp_path / rel).write_text(text)
    tracefs.TracerState.load(str(saved)).write_back()
    assert (tmp_path / "current_tracer").read_text() == "nop"
    assert (tmp_path / "trace_clock").read_text() == "local"
    assert (tmp_path / "options/bin").read_text() == "0"
    assert (tmp_path / "tracing_on").read_text() == "1"
    assert (tmp_path / "dev/act_mask").read_text() == "0x13"


def test_buffer_sizes_compare_as_the_kernel_rounds_them(tmp_path):
    """Before its first use the tracer reads '7 (expanded: 1408)'; after a write of 1408 it reads 1410 (whole
    sub-buffers of 4080 bytes); on other kernels 1410 written reads 1408. The same setting either way."""
    fresh = tmp_path / "fresh"
    fake_tracefs(fresh)
    before = tracefs.TracerState.snapshot(str(fresh), [])
    used = tmp_path / "used"
    fake_tracefs(used, buffer="1410")
    after = tracefs.TracerState.snapshot(str(used), [])
    assert before.values["buffer_size_kb"] == "1408" and after.values["buffer_size_kb"] == "1410"
    assert before.differences(after) == [] and after.differences(before) == []
    bigger = tmp_path / "bigger"
    fake_tracefs(bigger, buffer="4099")
    assert before.differences(tracefs.TracerState.snapshot(str(bigger), [])) == ["buffer_size_kb"]
    # Restoring leaves a size that is the same setting as it is (rewriting it would free and reallocate it).
    (used / "tracing_on").write_text("0")
    tracefs.TracerState(str(used), before.values, {}).write_back()
    assert (used / "buffer_size_kb").read_text() == "1410\n"  # not written
    tracefs.TracerState(str(bigger), before.values, {}).write_back()
    assert (bigger / "buffer_size_kb").read_text() == "1408"


def test_state_per_cpu_buffer_sizes(tmp_path):
    fake_tracefs(tmp_path, buffer="X")
    state = tracefs.TracerState.snapshot(str(tmp_path), [])
    assert "buffer_size_kb" not in state.values
    assert state.values["per_cpu/cpu1/buffer_size_kb"] == "2048"


def tracer_view(capture_devices):
    """The settings a capture changes, as seen now."""
    tracing = tracefs.find_tracefs()
    return tracefs.TracerState.snapshot(tracing, capture_devices).to_json()


def read(path):
    with open(path) as f:
        return f.read().strip()


def fio(dev, *args):
    cmd = ["fio", "--name=t", f"--filename={dev}", "--direct=1", "--output-format=json", *args]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    job = json.loads(run.stdout[run.stdout.index("{"):])["jobs"][0]
    return job["read"]["total_ios"] + job["write"]["total_ios"]


@pytest.mark.root
@pytest.mark.slow
def test_capture_counts_every_fio_io(tracer, loopdev, tmp_path):
    if not shutil.which("fio"):
        pytest.skip("needs fio")
    dev = loopdev(32 << 20)
    name, trace_dir = tracefs.device_trace_dir(dev)
    before = tracer_view([trace_dir])
    capture = BlkTracerCapture([dev], tmp_path, act_mask="queue", clock="mono", lock=tracer).setup()
    try:
        assert read(os.path.join(capture.tracer.tracing, "options", "bin")) == "1"
        assert read(os.path.join(trace_dir, "act_mask")) == "queue"
        assert read(os.path.join(capture.tracer.tracing, "current_tracer")) == "blk"
        capture.start()
        ios = fio(dev, "--rw=randrw", "--bs=4k", "--ioengine=libaio", "--iodepth=8", "--size=16M",
                  "--number_ios=1500")
    finally:
        summary = capture.finish()
    assert tracer_view([trace_dir]) == before
    assert not os.path.exists(tracefs.snapshot_path(tracer.path))
    assert ios == 1500
    assert summary["devices"][name]["queued"] == ios
    assert summary["lost"] == {} and summary["skipped_bytes"] == 0
    assert sorted(os.listdir(tmp_path))[:2] == [f"{name}.blktrace.0", f"{name}.blktrace.1"]


CHILD = """
import signal
import sys
from blkfleet.capture import tracefs
tracer = tracefs.configure([sys.argv[1]], act_mask="all", lock_path=sys.argv[2])
tracer.start()
print("ready", flush=True)
signal.pause()
"""


@pytest.mark.root
def test_killed_reader_is_restored_by_restore(tracer, loopdev, tmp_path):
    dev = loopdev(8 << 20)
    _, trace_dir = tracefs.device_trace_dir(dev)
    before = tracer_view([trace_dir])
    lock_path = str(tmp_path / "child.lock")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(ENGINE))
    child = subprocess.Popen([sys.executable, "-c", CHILD, dev, lock_path], stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline() == b"ready\n"
        during = tracer_view([trace_dir])
        assert during["values"]["current_tracer"] == "blk"
        assert during["values"]["options/bin"] == "1"
        assert during["devices"][trace_dir]["enable"] == "1"
        with pytest.raises(tracefs.TracerBusy):
            tracefs.recover_tracer(lock_path=lock_path)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
    assert tracer_view([trace_dir]) != before
    assert tracefs.recover_tracer(lock_path=lock_path, timeout=5) is True
    assert tracer_view([trace_dir]) == before
    assert tracefs.recover_tracer(lock_path=lock_path) is False


@pytest.mark.root
def test_configure_fails_cleanly_on_missing_device(tracer):
    with pytest.raises(BlkfleetError, match="no such block device: nosuchdisk9"):
        tracefs.configure(["nosuchdisk9"], lock=tracer)
    assert not os.path.exists(tracefs.snapshot_path(tracer.path))
