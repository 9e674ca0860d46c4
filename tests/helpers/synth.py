"""Synthetic blktrace inputs for tests: records, whole trace files, and a runner for the real CLI.

Stdlib plus the engine only, so any test module can use it.
"""

import io
import os
import re
import subprocess
import sys

from blkfleet.trace import TraceRecord, TraceWriter
from blkfleet.trace.record import HEADER_SIZE
from helpers import ENGINE

# Action words as the kernel writes them (reference section 1.3).
Q_READ = 0x00190001  # READ|SYNC|QUEUE, code 1
Q_WRITE = 0x001A0001  # WRITE|SYNC|QUEUE
Q_CGROUP = 0x00190101  # a Q carrying the cgroup flag: not selected (needs an 8-byte cgroup id PDU)
G_READ = 0x00190004
D_READ = 0x01590007
C_READ = 0x01990008
UNPLUG = 0x0011000A  # 8-byte big-endian depth PDU
N_PROCESS = 0x04000000  # 16-byte comm PDU
N_TIMESTAMP = 0x04000001  # 8-byte PDU
N_MESSAGE = 0x04000002

DEVICE = 0x00700004  # loop4


def rec(time, sector=0, nbytes=4096, action=Q_READ, pdu=b"", cpu=0, pid=4242, device=DEVICE, error=0,
        sequence=0, version=7):
    """A TraceRecord with the usual defaults (a 4 KiB read Q)."""
    return TraceRecord(time, sector, nbytes, action, pid, device, cpu, error, pdu, sequence, version)


def encode(records, version=7, byteorder="<"):
    """The bytes of a trace file holding ``records``."""
    buf = io.BytesIO()
    with TraceWriter(buf, version=version, byteorder=byteorder) as w:
        for r in records:
            w.write(r)
    return buf.getvalue()


def write_trace(path, records, version=7, byteorder="<"):
    """Write ``records`` to ``path`` with TraceWriter; returns the path."""
    with TraceWriter(path, version=version, byteorder=byteorder) as w:
        for r in records:
            w.write(r)
    return path


def offsets(records, version=7):
    """Byte offset of every record of a trace holding ``records``."""
    out, pos = [], 0
    for r in records:
        out.append(pos)
        pos += HEADER_SIZE[version] + len(r.pdu)
    return out


def typical_records(n=6, start=1_000_000_000, step=1_000_000, cpu=0):
    """A small realistic per-CPU trace: PROCESS notify, then per IO Q, G, D, C and an unplug."""
    out = [rec(start - 5, 0, 0, N_PROCESS, b"fio".ljust(16, b"\0"), cpu)]
    for i in range(n):
        t = start + i * step
        sector = 2048 + 8 * i
        out += [
            rec(t, sector, 4096, Q_READ if i % 2 else Q_WRITE, cpu=cpu, sequence=4 * i + 1),
            rec(t + 10, sector, 4096, G_READ, cpu=cpu, sequence=4 * i + 2),
            rec(t + 20, 0, 0, UNPLUG, (1).to_bytes(8, "big"), cpu),
            rec(t + 30, sector, 4096, D_READ, cpu=cpu, sequence=4 * i + 3),
            rec(t + 500, sector, 4096, C_READ, cpu=cpu, sequence=4 * i + 4),
        ]
    return out


def run_cli(*args, cwd=None, timeout=60):
    """Run ``python -m blkfleet ARGS`` as a subprocess; returns CompletedProcess with text stdout/stderr."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ENGINE) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run(
        [sys.executable, "-m", "blkfleet", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


def fails(result, *mentions, offset=None):
    """Assert a command failed as bad input must: exit 2, one stderr line starting 'blkfleet: ', no traceback,
    mentioning each of ``mentions`` (and ``offset N`` when given); returns that line."""
    err = result.stderr
    assert result.returncode == 2, (result.returncode, err)
    assert "Traceback" not in err and "Traceback" not in result.stdout
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    line = lines[0]
    assert line.startswith("blkfleet: "), line
    for text in mentions:
        assert str(text) in line, (text, line)
    if offset is not None:
        assert re.search(rf"\boffset {offset}\b", line), (offset, line)
    return line


def capture_state(files, where="summary"):
    """capture.json as 'capture stop' leaves it (control.finish_summary), per-file counters ``files``."""
    devices = {}
    for name, (queued, nbytes, size) in files.items():
        entry = devices.setdefault(name.split(".")[0], {"files": {}, "queued": 0})
        entry["files"][name] = {"records": queued, "queued": queued, "bytes": nbytes, "file_bytes": size,
                                "drops": 0, "drop_reports": 0}
    doc = {"state": "stopped", "devices": list(devices)}
    if where == "summary":
        doc["summary"] = {"devices": devices, "queued": sum(v[0] for v in files.values())}
    elif where == "top":  # a writer that moved the counters to the top level
        doc["devices"] = devices
    else:  # or gave them as one object by file name
        doc["summary"] = {"files": {n: e for d in devices.values() for n, e in d["files"].items()}}
    return doc
