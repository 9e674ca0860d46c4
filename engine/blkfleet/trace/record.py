"""One blktrace record (``struct blk_io_trace`` v7 or ``blk_io_trace2`` v8) and its fixed layouts."""

import struct
from collections import namedtuple

from .actions import (
    C_NOTIFY,
    CGROUP_FLAG,
    N_MESSAGE,
    N_PROCESS,
    N_TIMESTAMP,
    action_name,
    categories,
)

MAGIC = 0x65617400
MAGIC_MASK = 0xFFFFFF00
SUPPORTED_VERSIONS = (7, 8)

# Field order of both layouts as (name, format); v8 moves pid before a 64-bit action and pads to 64 bytes.
_V7 = "IIQQIIIIIHH"  # magic seq time sector bytes action pid device cpu error pdu_len
_V8 = "IIQQIIQIIHH12x"  # magic seq time sector bytes pid action device cpu error pdu_len pad


_NAMES = {
    7: ("magic", "sequence", "time", "sector", "bytes", "action", "pid", "device", "cpu", "error", "pdu_len"),
    8: ("magic", "sequence", "time", "sector", "bytes", "pid", "action", "device", "cpu", "error", "pdu_len"),
}


def layout(version, byteorder):
    """The struct.Struct for a record header of this protocol version and byte order ('<' or '>')."""
    return struct.Struct(byteorder + (_V7 if version == 7 else _V8))


def _fields(version):
    codes = _V7 if version == 7 else _V8[: -len("12x")]  # the trailing pad holds no field
    offsets = [struct.calcsize("=" + codes[:i]) for i in range(len(codes))]
    return {name: (offset, code) for name, offset, code in zip(_NAMES[version], offsets, codes)}


HEADER_SIZE = {7: struct.calcsize("=" + _V7), 8: struct.calcsize("=" + _V8)}  # 48 and 64 bytes
# {version: {field name: (byte offset in the header, struct code)}}: where whole-column readers find a field.
FIELDS = {7: _fields(7), 8: _fields(8)}


def field_layout(version, names, byteorder):
    """A struct.Struct that reads (or packs) the fields ``names`` of a header, in header order, skipping the
    others; it ends with the last field named (``("magic", "sequence", "time")``: the first 16 bytes)."""
    fields = FIELDS[version]
    wanted = sorted(fields[name][0] for name in names)
    codes, at = [], 0
    for offset in wanted:
        code = next(c for o, c in fields.values() if o == offset)
        codes.append(f"{offset - at}x{code}" if offset > at else code)
        at = offset + struct.calcsize("=" + code)
    return struct.Struct(byteorder + "".join(codes))


# collections.namedtuple, not typing.NamedTuple: importing typing costs the converter 3 ms of start-up.
_RECORD = namedtuple("TraceRecord", "time sector bytes action pid device cpu error pdu sequence version",
                     defaults=(0, b"", 0, 7))


class TraceRecord(_RECORD):
    """A decoded record (integers, but ``pdu``: the payload bytes, cgroup id first when flagged)."""

    __slots__ = ()

    @property
    def categories(self):
        return categories(self.action)

    @property
    def action_name(self):
        return action_name(self.action)

    @property
    def is_notify(self):
        return bool(self.action & C_NOTIFY)

    @property
    def payload(self):
        """The PDU without the leading cgroup id."""
        return self.pdu[8:] if self.action & CGROUP_FLAG else self.pdu

    @property
    def process_name(self):
        """Task name of a PROCESS notify, else None."""
        if self.is_notify and self.action & 0xFF == N_PROCESS:
            return self.payload.split(b"\0", 1)[0].decode("utf-8", "replace")
        return None

    @property
    def message(self):
        """Text of a MESSAGE notify, else None."""
        if self.is_notify and self.action & 0xFF == N_MESSAGE:
            return self.payload.decode("utf-8", "replace")
        return None

    def wall_clock(self, byteorder="<"):
        """(seconds, nanoseconds) of a TIMESTAMP notify, decoded in the trace's byte order, else None."""
        if self.is_notify and self.action & 0xFF == N_TIMESTAMP and len(self.payload) >= 8:
            return struct.unpack_from(byteorder + "II", self.payload)
        return None

    @property
    def dev_major(self):
        return self.device >> 20

    @property
    def dev_minor(self):
        return self.device & 0xFFFFF
