"""Q and C events from the block tracepoints, in a private tracefs instance (ftrace ``events`` mode).

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

Completions (on unless ``completions=False``) come from the tracepoint that completes what a Q queued, which
depends on the device, as traced on Linux 6.18 (tests/capture/test_completions.py):

* request-based devices (blk-mq: ``/sys/block/DEV/mq`` exists; loop, NVMe, SCSI, virtio, request-based dm):
  ``block_rq_complete``, the blk tracer's C: the request's sector and the bytes it completed, once per request
  (a request holds the bios merged into it; a bio split into several requests is completed by several). Their
  ``block_bio_complete`` never fires: bios completed through a request are not traced there.
* bio-based devices (dm, md, zram, an NVMe multipath head): ``block_bio_complete``, one per queued bio with its
  sector and size; no request, so no ``block_rq_complete`` on that device.

A C record is made like a Q: the action is C (8) with the complete category and the categories of ``rwbs`` (for
a request also the fs category, which the blk tracer sets for requests that are not passthrough; the tracepoint
does not tell them apart, and a bio-based device has none), error = the event's ``error`` (a negative errno,
stored as the blk tracer does: its low 16 bits). An empty flush completes as the empty request it was queued as
(sector 0, no bytes); the flush request the kernel sends for it shows as a C of op flush (the flush category
without the write one) at sector 2^64 - 1, which completes nothing that was queued. That sector is written as
0, as the blk tracer writes it (``blk_rq_trace_sector``), so that both give the same records
(tests/capture/test_modes.py).
"""

import os
import re
import struct

from ..errors import BlkfleetError
from ..trace.actions import (
    A_COMPLETE,
    A_QUEUE,
    C_AHEAD,
    C_COMPLETE,
    C_DISCARD,
    C_FLUSH,
    C_FS,
    C_FUA,
    C_META,
    C_QUEUE,
    C_READ,
    C_SYNC,
    C_WRITE,
)
from ..trace.record import MAGIC, layout
from . import tracefs
from .rawpages import page_events
from .split import NATIVE

EVENT = ("block", "block_bio_queue")
RQ_COMPLETE = ("block", "block_rq_complete")
BIO_COMPLETE = ("block", "block_bio_complete")
COMPLETIONS = (RQ_COMPLETE, BIO_COMPLETE)
EVENTS = (EVENT, *COMPLETIONS)
INSTANCE = "blkfleet"
FIELDS = ("common_pid", "dev", "sector", "nr_sector", "rwbs")  # what every event must have; C events: error too
QUEUE_BASE = A_QUEUE | C_QUEUE
COMPLETE_BASE = A_COMPLETE | C_COMPLETE
BASES = {EVENT: QUEUE_BASE, RQ_COMPLETE: COMPLETE_BASE | C_FS, BIO_COMPLETE: COMPLETE_BASE}


def instance_dir(tracing):
    return os.path.join(tracing, "instances", INSTANCE)


def event_name(event):
    return "/".join(event)


def event_format(tracing, event=EVENT):
    """(event id, {field: (offset, size)}) of a block tracepoint (default block_bio_queue); BlkfleetError if the
    kernel lacks it or one of the fields the decoder reads."""
    path = os.path.join(tracing, "events", *event, "format")
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise BlkfleetError(f"the kernel has no {event_name(event)} trace event ({path})") from None
    event_id = int(re.search(r"^ID:\s*(\d+)", text, re.M).group(1))
    fields = {m.group(1): (int(m.group(2)), int(m.group(3)))
              for m in re.finditer(r"field:[^;]*?(\w+)(?:\[\d+\])?;\s*offset:(\d+);\s*size:(\d+);", text)}
    for name in FIELDS + (("error",) if event in COMPLETIONS else ()):
        if name not in fields:
            raise BlkfleetError(f"{event_name(event)} has no field {name!r} on this kernel")
    return event_id, fields


def completion_event(sysdir):
    """The tracepoint that completes the bios a device queues: ``block_rq_complete`` for a request-based
    (blk-mq) device, ``block_bio_complete`` for a bio-based one (see the module's docstring)."""
    return RQ_COMPLETE if os.path.isdir(os.path.join(sysdir, "mq")) else BIO_COMPLETE


def rwbs_categories(rwbs):
    """The category bits the blk tracer sets for a ``rwbs`` string (bytes, NUL-free)."""
    action = 0
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


def rwbs_action(rwbs):
    """The blk tracer's Q action word for a ``rwbs`` string (bytes, NUL-free)."""
    return QUEUE_BASE | rwbs_categories(rwbs)


class _Kind:
    """How one event id becomes a record: its field offsets, sector width and base action."""

    __slots__ = ("base", "min_len", "pid", "dev", "sector", "nr", "rwbs", "rwbs_size", "error", "sector_unpack",
                 "unset")

    def __init__(self, base, fields, byteorder):
        self.base = base
        self.min_len = max(o + s for o, s in fields.values())
        self.pid, self.dev, self.sector, self.nr, self.rwbs = (fields[k][0] for k in FIELDS)
        self.rwbs_size = fields["rwbs"][1]
        self.error = fields["error"][0] if base & C_COMPLETE else None
        self.sector_unpack = struct.Struct(byteorder + ("Q" if fields["sector"][1] == 8 else "I")).unpack_from
        self.unset = (1 << 8 * fields["sector"][1]) - 1  # a request's sector that was never set


class BlockEventDecoder:
    """Turns the block tracepoint events of a page into v7 records (``rawpages.convert`` decoder): Q records of
    ``block_bio_queue``, C records of the completion events.

    ``queue``: (event id, fields) of block_bio_queue; ``completions``: {event: (event id, fields)} of the
    completion events that may appear (``COMPLETIONS``; ids and offsets as ``event_format`` gives them)."""

    def __init__(self, queue, completions=None, byteorder=NATIVE):
        self.kinds = {queue[0]: _Kind(QUEUE_BASE, queue[1], byteorder)}
        for event, (event_id, fields) in (completions or {}).items():
            self.kinds[event_id] = _Kind(BASES[event], fields, byteorder)
        self.u16 = struct.Struct(byteorder + "H").unpack_from
        self.i32 = struct.Struct(byteorder + "i").unpack_from
        self.u32 = struct.Struct(byteorder + "I").unpack_from
        self.pack = layout(7, byteorder).pack
        self.magic = MAGIC | 7
        self._actions = {}

    def records(self, page, layout, stats, cpu):
        out = []
        u16, i32, u32, kinds, actions = self.u16, self.i32, self.u32, self.kinds, self._actions
        pack, magic = self.pack, self.magic
        for ts, data, dlen in page_events(page, layout, stats):
            kind = kinds.get(u16(page, data)[0]) if dlen >= 2 else None
            if kind is None or dlen < kind.min_len:
                stats.other += 1
                continue
            rwbs = bytes(page[data + kind.rwbs:data + kind.rwbs + kind.rwbs_size]).split(b"\0", 1)[0]
            key = (kind.base, rwbs)
            action = actions.get(key)
            if action is None:
                action = actions[key] = kind.base | rwbs_categories(rwbs)
            error = 0 if kind.error is None else i32(page, data + kind.error)[0] & 0xFFFF
            sector = kind.sector_unpack(page, data + kind.sector)[0]
            out.append(pack(magic, 0, ts, 0 if sector == kind.unset else sector,
                            u32(page, data + kind.nr)[0] << 9, action, i32(page, data + kind.pid)[0],
                            u32(page, data + kind.dev)[0], cpu, error, 0))
            stats.records += 1
        return b"".join(out)


def decoder(tracing, byteorder=NATIVE):
    """The decoder of every event an events capture may have traced on this kernel (completion events the
    kernel lacks are left out)."""
    completions = {}
    for event in COMPLETIONS:
        try:
            completions[event] = event_format(tracing, event)
        except BlkfleetError:
            pass
    return BlockEventDecoder(event_format(tracing), completions, byteorder)


def remove_instance(tracing):
    """Disable the events and delete the instance (whatever a killed capture left); True if there was one."""
    inst = instance_dir(tracing)
    if not os.path.isdir(inst):
        return False
    settings = [("tracing_on", "0")]
    for event in EVENTS:
        settings += [(os.path.join("events", *event, "enable"), "0"), (os.path.join("events", *event, "filter"), "0")]
    for rel, value in settings:
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
    """The instance of one capture, with block_bio_queue (and the completion events) enabled for its devices
    (made by ``configure``). @completions: {event: [dev_t, ...]} of the completion events enabled."""

    snapshot_part = "instance"
    completions = None

    def _undo(self):
        remove_instance(self.root)


def configure(devices, buffer_kb=tracefs.DEFAULT_BUFFER_KB, clock="mono", *, completions=True, lock=None,
              lock_path=tracefs.LOCK_PATH, owner=None):
    """Own the tracer lock, create the instance and enable block_bio_queue for ``devices`` (tracing off), and with
    ``completions`` each device's completion event (``completion_event``); returns its ``BioQueueInstance``.

    The tracer snapshot records the instance (and ``owner``) before it is made, so that a restore after this
    process died removes it, after salvaging its buffers for ``owner``."""
    tracefs.require_root()
    tracing = tracefs.find_tracefs()
    event_format(tracing)
    resolved = dict(tracefs.device_trace_dir(d) for d in devices)
    if not resolved:
        raise BlkfleetError("no block device to trace")
    numbers = []
    by_event = {}
    for name, trace_dir in resolved.items():
        sysdir = os.path.dirname(trace_dir)
        if os.path.exists(os.path.join(sysdir, "partition")):
            raise BlkfleetError(f"{name} is a partition: the events mode traces whole devices (use --mode raw)")
        with open(os.path.join(sysdir, "dev")) as f:
            major, minor = (int(x) for x in f.read().split(":"))
        numbers.append(major << 20 | minor)
        if completions:
            by_event.setdefault(completion_event(sysdir), []).append(numbers[-1])
    for event in by_event:
        event_format(tracing, event)
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
    instance.completions = by_event
    write = tracefs.write_setting
    try:
        write(os.path.join(inst, "tracing_on"), "0")
        tracefs.check_clock(inst, clock)
        write(os.path.join(inst, "trace_clock"), clock)
        if buffer_kb:
            write(os.path.join(inst, "buffer_size_kb"), str(int(buffer_kb)))
        for event, devs in [(EVENT, numbers), *by_event.items()]:
            path = os.path.join(inst, "events", *event)
            write(os.path.join(path, "filter"), " || ".join(f"dev == {n}" for n in devs))
            write(os.path.join(path, "enable"), "1")
        tracefs.clear_buffer(inst)
    except BaseException:
        instance.teardown()
        raise
    return instance
