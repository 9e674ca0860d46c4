"""Ftrace ring-buffer pages (``per_cpu/cpuN/trace_pipe_raw``) and their conversion to blktrace v7 records.

A capture in *raw* mode copies each CPU's ring-buffer pages, as the kernel hands them out, into one file per
CPU (``os.splice`` where available, as trace-cmd does, else ``os.read``/``os.write``): no formatting in the
kernel, no parsing in Python while the workload runs. ``convert()`` turns those files into
``DEV.blktrace.CPU`` files at stop time, through ``split.Splitter`` (one file per device and CPU).

Page layout (``events/header_page``; 64-bit kernel): u64 timestamp, local_t commit (8 bytes) whose low bits
are the number of data bytes and whose bit 31 (``RB_MISSED_EVENTS``) says events were lost before this page
and bit 30 (``RB_MISSED_STORED``) that their count (a long) follows the data. The data is a run of events,
each with a 32-bit header ``type_len:5, time_delta:27`` (low bits first on little-endian machines):

* ``type_len`` 1..28: data of ``type_len * 4`` bytes follows the header;
* 0: ``array[0]`` holds the length (+4), the data follows it;
* 29 padding (``time_delta == 0 and array[0] == 0``: the rest of the page is empty, else skip
  ``array[0]`` bytes); 30 time extend (``delta += array[0] << 27``); 31 absolute time stamp.

Each event's timestamp is the page timestamp plus the deltas so far. The blk tracer's entry is a
``struct blk_io_trace`` whose first 8 bytes hold the generic ``struct trace_entry`` (u16 type, u8 flags,
u8 preempt count, s32 pid); bytes 16..47 + pdu are exactly the record bytes that ``trace_pipe`` in bin mode
emits after its own magic, sequence 0 and the timestamp (kernel ``blk_trace_synthesize_old_trace``).
"""

import os
import re
import struct
import sys

from ..trace.record import FIELDS, HEADER_SIZE, MAGIC, field_layout
from .split import NATIVE, Splitter

TS_SHIFT = 27
TYPE_PADDING = 29
TYPE_TIME_EXTEND = 30
TYPE_TIME_STAMP = 31
MISSED_EVENTS = 1 << 31
MISSED_STORED = 1 << 30
ABS_TS_BITS = 59
BLK_ENTRY = HEADER_SIZE[7]  # a blk tracer entry is a v7 header (its first 16 bytes the ftrace entry) + payload
ENTRY_DATA_AT = FIELDS[7]["sector"][0]  # what follows magic, sequence and time: the kernel's own bytes
ENTRY_PDU_LEN_AT = FIELDS[7]["pdu_len"][0]


class PageLayout:
    """Where the commit word and the data start in a page, and the page size (sub-buffer size)."""

    def __init__(self, page_size=4096, commit_offset=8, commit_size=8, data_offset=16, byteorder=NATIVE):
        self.page_size = page_size
        self.commit_offset = commit_offset
        self.commit_size = commit_size
        self.data_offset = data_offset
        self.byteorder = byteorder
        self.long = struct.Struct(byteorder + ("Q" if commit_size == 8 else "I"))
        self.commit_mask = (1 << 30) - 1

    @classmethod
    def from_tracefs(cls, tracing):
        """Read ``events/header_page`` and ``buffer_subbuf_size_kb`` (when the kernel has it)."""
        fields = {}
        try:
            with open(os.path.join(tracing, "events", "header_page")) as f:
                for m in re.finditer(r"field: .*?(\w+);\s*offset:(\d+);\s*size:(\d+);", f.read()):
                    fields.setdefault(m.group(1), (int(m.group(2)), int(m.group(3))))
        except OSError:
            pass
        commit = fields.get("commit", (8, 8))
        data = fields.get("data", (16, 4080))
        page_size = data[0] + data[1]
        try:
            with open(os.path.join(tracing, "buffer_subbuf_size_kb")) as f:
                page_size = int(f.read().split()[0]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return cls(page_size, commit[0], commit[1], data[0])

    def to_json(self):
        return {"page_size": self.page_size, "commit_offset": self.commit_offset,
                "commit_size": self.commit_size, "data_offset": self.data_offset,
                "byteorder": "little" if self.byteorder == "<" else "big"}

    @classmethod
    def from_json(cls, d):
        return cls(d["page_size"], d["commit_offset"], d["commit_size"], d["data_offset"],
                   "<" if d.get("byteorder", sys.byteorder) == "little" else ">")


def blk_entry_type(tracing):
    """The ftrace entry type number of the blk tracer (``TRACE_BLK``), which tracefs does not list.

    ``enum trace_type`` puts TRACE_BLK right after TRACE_USER_STACK and before TRACE_BPUTS, both listed
    under ``events/ftrace``; when that gap is not exactly one number, None (then any entry that looks
    like a blk record is accepted).
    """
    ids = {}
    base = os.path.join(tracing, "events", "ftrace")
    for name in ("user_stack", "bputs"):
        try:
            with open(os.path.join(base, name, "format")) as f:
                m = re.search(r"^ID:\s*(\d+)", f.read(), re.M)
            if m:
                ids[name] = int(m.group(1))
        except OSError:
            pass
    if "user_stack" in ids and ids.get("bputs") == ids["user_stack"] + 2:
        return ids["user_stack"] + 1
    return None


class PageStats:
    """What the pages said: pages, events, blk records, other entries, missed-event flags and counts."""

    __slots__ = ("pages", "events", "records", "other", "missed_reports", "missed_events", "bad_pages")

    def __init__(self):
        self.pages = self.events = self.records = self.other = 0
        self.missed_reports = self.missed_events = self.bad_pages = 0


def page_events(page, layout, stats):
    """``(timestamp, data offset, data length)`` of every data event of one page, in order."""
    bo = layout.byteorder
    u32 = struct.Struct(bo + "I").unpack_from
    ts = struct.unpack_from(bo + "Q", page, 0)[0]
    page_ts = ts
    commit = layout.long.unpack_from(page, layout.commit_offset)[0]
    length = commit & layout.commit_mask
    pos = layout.data_offset
    end = pos + length
    stats.pages += 1
    if end > len(page):
        stats.bad_pages += 1
        return
    if commit & MISSED_EVENTS:
        stats.missed_reports += 1
        if commit & MISSED_STORED and end + layout.long.size <= len(page):
            stats.missed_events += layout.long.unpack_from(page, end)[0]
    while pos + 4 <= end:
        word = u32(page, pos)[0]
        type_len = word & 31
        delta = word >> 5
        if type_len == 0:
            size = u32(page, pos + 4)[0]
            data = pos + 8
            dlen = size - 4
            nxt = pos + 4 + size
            ts += delta
        elif type_len <= 28:
            data = pos + 4
            dlen = type_len * 4
            nxt = data + dlen
            ts += delta
        elif type_len == TYPE_PADDING:
            if delta == 0 and (pos + 8 > end or u32(page, pos + 4)[0] == 0):
                return
            pos += 4 + u32(page, pos + 4)[0]
            continue
        elif type_len == TYPE_TIME_EXTEND:
            ts += (u32(page, pos + 4)[0] << TS_SHIFT) + delta
            pos += 8
            continue
        else:  # TYPE_TIME_STAMP: 59 bits of an absolute time, the upper bits come from the page
            abs_ts = (u32(page, pos + 4)[0] << TS_SHIFT) | delta
            ts = abs_ts | (page_ts & ~((1 << ABS_TS_BITS) - 1))
            if ts < page_ts:
                ts += 1 << ABS_TS_BITS
            pos += 8
            continue
        if nxt > end or dlen < 0:
            stats.bad_pages += 1
            return
        stats.events += 1
        pos = nxt
        yield ts, data, dlen


class BlkDecoder:
    """The blk tracer's entries: the entry's own bytes (from ``ENTRY_DATA_AT``) after a fresh magic, sequence 0
    and the time."""

    def __init__(self, blk_type, byteorder=NATIVE):
        self.blk_type = blk_type
        self.u16 = struct.Struct(byteorder + "H").unpack_from
        self.head = field_layout(7, ("magic", "sequence", "time"), byteorder).pack
        self.magic = MAGIC | 7

    def records(self, page, layout, stats, cpu):
        out = []
        u16, head, magic, blk_type = self.u16, self.head, self.magic, self.blk_type
        size, data_at, pdu_len_at = BLK_ENTRY, ENTRY_DATA_AT, ENTRY_PDU_LEN_AT
        for ts, data, dlen in page_events(page, layout, stats):
            if dlen < size or (blk_type is not None and u16(page, data)[0] != blk_type):
                stats.other += 1
                continue
            rec_len = size + u16(page, data + pdu_len_at)[0]
            if rec_len > dlen:
                stats.other += 1
                continue
            out.append(head(magic, 0, ts))
            out.append(page[data + data_at:data + rec_len])
            stats.records += 1
        return b"".join(out)


def iter_pages(path, page_size):
    """Whole pages of a raw file (a short tail, from an interrupted write, is ignored)."""
    with open(path, "rb", buffering=0) as f:
        while True:
            chunk = f.read(page_size * 64)
            if not chunk:
                return
            view = memoryview(chunk)
            for off in range(0, len(chunk) - page_size + 1, page_size):
                yield view[off:off + page_size]


def convert(raw_files, outdir, layout, decoder, ncpus=None, names=None, devices=(), extra_drops=None):
    """Convert ``{cpu: raw file}`` into ``DEV.blktrace.CPU`` files; returns the Splitter summary + pages.

    ``decoder`` turns a page's events into v7 records (``BlkDecoder`` for the blk tracer,
    ``bioevents.BlockEventDecoder`` for the tracepoints). ``extra_drops``: ``{cpu: events}`` the kernel counted as
    lost (``per_cpu/cpuN/stats``); per CPU the larger of that and the count stored in the pages is reported.
    """
    per_cpu = {}
    with Splitter(outdir, ncpus=ncpus, names=names, devices=devices, byteorder=layout.byteorder) as sp:
        for cpu, path in sorted(raw_files.items()):
            stats = PageStats()
            for page in iter_pages(path, layout.page_size):
                data = decoder.records(page, layout, stats, cpu)
                if data:
                    sp.feed(data)
            per_cpu[cpu] = stats
            stated = (extra_drops or {}).get(cpu, 0)
            if stats.missed_reports or stated:
                sp.add_lost(cpu, max(stats.missed_events, stated), max(stats.missed_reports, 1))
    summary = sp.summary()
    summary["pages"] = {
        str(cpu): {name: getattr(s, name) for name in PageStats.__slots__} for cpu, s in sorted(per_cpu.items())
    }
    return summary
