"""Q events from the ``block:block_bio_queue`` tracepoint, in a private tracefs instance (ftrace ``events`` mode).

The blk tracer emits four events per IO even with ``act_mask`` queue (Q, and G, P, U, which carry the queue
category too) and costs the submitting task about 0.4 us per event. btrecord needs only Q. The kernel's
blk tracer produces its Q from this very tracepoint (``blk_add_trace_bio_queue`` is a probe on
``block_bio_queue``), so tracing the tracepoint alone yields the same IOs: one event per IO, no global
tracer touched (an instance ``instances/blkfleet`` has its own buffers, clock and tracing_on).

Each event becomes a v7 Q record: time = ring-buffer timestamp, sector, bytes = ``nr_sector * 512``,
action = Q with the categories the blk tracer would set, decoded from ``rwbs`` (``blk_fill_rwbs``: an
optional ``F`` for PREFLUSH, the op ``R``/``W``/``D``/``DE``/``F``/``N``, then ``F`` FUA, ``A`` readahead,
``S`` sync, ``M`` meta), pid = the submitting task, device = ``dev`` (already in the kernel's
``major << 20 | minor`` form), cpu = the buffer's CPU, error 0, no payload. Op ``N`` (write-zeroes, zone
operations) is given the write category: most such ops write (blk tracer: ``op_is_write``), and btrecord
would otherwise replay them as reads.
"""

import os
import re
import struct

from ..errors import BlkfleetError
from ..trace.actions import A_QUEUE, C_AHEAD, C_DISCARD, C_FLUSH, C_FUA, C_META, C_QUEUE, C_READ, C_SYNC, C_WRITE
from ..trace.record import MAGIC, layout
from . import tracefs
from .rawpages import page_events
from .split import NATIVE

EVENT = ("block", "block_bio_queue")
INSTANCE = "blkfleet"


def instance_dir(tracing):
    return os.path.join(tracing, "instances", INSTANCE)


def event_format(tracing):
    """(event id, {field: (offset, size)}) of block_bio_queue; BlkfleetError if the kernel lacks it."""
    path = os.path.join(tracing, "events", *EVENT, "format")
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise BlkfleetError(f"the kernel has no {'/'.join(EVENT)} trace event ({path})") from None
    event_id = int(re.search(r"^ID:\s*(\d+)", text, re.M).group(1))
    fields = {m.group(1): (int(m.group(2)), int(m.group(3)))
              for m in re.finditer(r"field:[^;]*?(\w+)(?:\[\d+\])?;\s*offset:(\d+);\s*size:(\d+);", text)}
    for name in ("dev", "sector", "nr_sector", "rwbs", "common_pid"):
        if name not in fields:
            raise BlkfleetError(f"{'/'.join(EVENT)} has no field {name!r} on this kernel")
    return event_id, fields


def rwbs_action(rwbs):
    """The blk tracer's Q action word for a ``rwbs`` string (bytes, NUL-free)."""
    action = A_QUEUE | C_QUEUE
    s = rwbs
    if len(s) >= 2 and s[:1] == b"F" and s[1:2] in b"RWDFN":
        action |= C_FLUSH  # PREFLUSH
        s = s[1:]
    op, s = s[:1], s[1:]
    if op == b"R":
        action |= C_READ
    elif op == b"W" or op == b"N":
        action |= C_WRITE
    elif op == b"D":
        action |= C_WRITE | C_DISCARD
        if s[:1] == b"E":
            s = s[1:]
    elif op == b"F":
        action |= C_READ | C_FLUSH  # REQ_OP_FLUSH is an even op: op_is_write() is false
    for ch in s:
        action |= {70: C_FUA, 65: C_AHEAD, 83: C_SYNC, 77: C_META}.get(ch, 0)
    return action


class BioQueueDecoder:
    """Turns the block_bio_queue events of a page into v7 Q records (``rawpages.convert`` decoder)."""

    def __init__(self, event_id, fields, byteorder=NATIVE):
        self.event_id = event_id
        bo = byteorder
        self.u16 = struct.Struct(bo + "H").unpack_from
        self.pid = struct.Struct(bo + "i").unpack_from
        self.dev = struct.Struct(bo + "I").unpack_from
        self.sector = struct.Struct(bo + ("Q" if fields["sector"][1] == 8 else "I")).unpack_from
        self.nr = struct.Struct(bo + "I").unpack_from
        self.off = {name: fields[name][0] for name in ("common_pid", "dev", "sector", "nr_sector", "rwbs")}
        self.rwbs_size = fields["rwbs"][1]
        self.min_len = max(o + s for o, s in fields.values())
        self.pack = layout(7, bo).pack
        self.magic = MAGIC | 7
        self._actions = {}

    def records(self, page, layout, stats, cpu):
        out = []
        o_pid, o_dev, o_sec, o_nr, o_rwbs = (self.off[k] for k in ("common_pid", "dev", "sector", "nr_sector",
                                                                    "rwbs"))
        u16, event_id, actions = self.u16, self.event_id, self._actions
        for ts, data, dlen in page_events(page, layout, stats):
            if dlen < self.min_len or u16(page, data)[0] != event_id:
                stats.other += 1
                continue
            rwbs = bytes(page[data + o_rwbs:data + o_rwbs + self.rwbs_size]).split(b"\0", 1)[0]
            action = actions.get(rwbs)
            if action is None:
                action = actions[rwbs] = rwbs_action(rwbs)
            out.append(self.pack(self.magic, 0, ts, self.sector(page, data + o_sec)[0],
                                 self.nr(page, data + o_nr)[0] << 9, action, self.pid(page, data + o_pid)[0],
                                 self.dev(page, data + o_dev)[0], cpu, 0, 0))
            stats.records += 1
        return b"".join(out)


def remove_instance(tracing):
    """Disable the event and delete the instance (whatever a killed capture left); True if there was one."""
    inst = instance_dir(tracing)
    if not os.path.isdir(inst):
        return False
    for rel, value in (("tracing_on", "0"), (os.path.join("events", *EVENT, "enable"), "0"),
                       (os.path.join("events", *EVENT, "filter"), "0")):
        try:
            with open(os.path.join(inst, rel), "w") as f:
                f.write(value)
        except OSError:
            pass
    try:
        os.rmdir(inst)
    except OSError as e:
        raise BlkfleetError(f"cannot remove the tracefs instance {inst}: {e.strerror}") from None
    return True


class BioQueueInstance(tracefs.OwnedTracer):
    """The instance of one capture, with block_bio_queue enabled for its devices (made by ``configure``)."""

    snapshot_part = "instance"

    def _undo(self):
        remove_instance(self.root)


def configure(devices, buffer_kb=tracefs.DEFAULT_BUFFER_KB, clock="mono", *, lock=None, lock_path=tracefs.LOCK_PATH,
              owner=None):
    """Own the tracer lock, create the instance and enable block_bio_queue for ``devices`` (tracing off); returns
    its ``BioQueueInstance``.

    The tracer snapshot records the instance (and ``owner``) before it is made, so that a restore after this
    process died removes it, after salvaging its buffers for ``owner``."""
    tracefs.require_root()
    tracing = tracefs.find_tracefs()
    event_format(tracing)
    resolved = dict(tracefs.device_trace_dir(d) for d in devices)
    if not resolved:
        raise BlkfleetError("no block device to trace")
    numbers = []
    for name, trace_dir in resolved.items():
        sysdir = os.path.dirname(trace_dir)
        if os.path.exists(os.path.join(sysdir, "partition")):
            raise BlkfleetError(f"{name} is a partition: the events mode traces whole devices (use --mode raw)")
        with open(os.path.join(sysdir, "dev")) as f:
            major, minor = (int(x) for x in f.read().split(":"))
        numbers.append(major << 20 | minor)
    own_lock = lock is None
    lock = (lock or tracefs.TracerLock(lock_path)).acquire()
    saved = False
    try:
        tracefs.save_snapshot(lock, tracing, owner=owner, instance=True)
        saved = True
        remove_instance(tracing)
        inst = instance_dir(tracing)
        try:
            os.mkdir(inst)
        except OSError as e:
            raise BlkfleetError(f"cannot create the tracefs instance {inst}: {e.strerror}") from None
    except BaseException:
        if saved:
            tracefs.drop_snapshot(lock, "instance")
        if own_lock:
            lock.release()
        raise
    instance = BioQueueInstance(tracing, inst, resolved, lock, own_lock)
    write = tracefs.write_setting
    try:
        write(os.path.join(inst, "tracing_on"), "0")
        tracefs.check_clock(inst, clock)
        write(os.path.join(inst, "trace_clock"), clock)
        if buffer_kb:
            write(os.path.join(inst, "buffer_size_kb"), str(int(buffer_kb)))
        event = os.path.join(inst, "events", *EVENT)
        write(os.path.join(event, "filter"), " || ".join(f"dev == {n}" for n in numbers))
        write(os.path.join(event, "enable"), "1")
        tracefs.clear_buffer(inst)
    except BaseException:
        instance.teardown()
        raise
    return instance
