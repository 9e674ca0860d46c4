"""CSV traces described by a column mapping: which field holds the time, offset, size, operation and device, and
in which units. The public CSV traces (MSR Cambridge, Alibaba, Tencent CBS: formats.py) are mappings too, and
``blkfleet import csv`` takes one from the command line.

When every line of a block has ``fields`` fields (``columns.uniform_lines``: one ``translate`` and one compare),
the block is split at once (the newlines made delimiters, one ``split``) and every column is a strided slice of
it; otherwise it is walked line by line to skip empty lines and name the first line with another number of
fields.
"""

from array import array
from itertools import repeat
from operator import mul

from ..replayfile.ops import OP_NAMES
from .columns import Rows, check_extents, line_numbers, plain_text, scaled, uniform_lines, whole
from .inputs import InputError

TIME_UNITS = {"ns": (1, 1), "us": (1000, 1), "ms": (1_000_000, 1), "s": (1_000_000_000, 1),
              "filetime": (100, 1)}  # filetime: Windows FILETIME, 100 ns ticks
OPS = {name: op for op, name in enumerate(OP_NAMES)}
MAX_FIELDS = 64


class CsvLayout:
    """A column mapping. ``fields``: fields per line; ``time``, ``offset``, ``size``: their field index (from 0);
    ``time_unit``: (ns numerator, denominator) of one unit; ``offset_unit``, ``size_unit``: bytes of one unit;
    ``op``: field index of the operation (None: every IO is ``default_op``) and ``op_values`` {field text: op};
    ``device``: field indexes whose values, joined by ``_``, name the device (empty: one device); ``headers``:
    first lines to skip when found (lower case); ``skip_lines``: lines to skip at the start of every input;
    ``device_name``: the device's name when no field names it."""

    relative_time = False

    def __init__(self, fields, time, offset, size, time_unit, offset_unit=1, size_unit=1, op=None, op_values=None,
                 default_op=0, device=(), delimiter=b",", headers=(), skip_lines=0, device_name="trace"):
        self.fields, self.time, self.offset, self.size = fields, time, offset, size
        self.time_unit, self.offset_unit, self.size_unit = time_unit, offset_unit, size_unit
        self.op, self.op_values, self.default_op = op, dict(op_values or {}), default_op
        self.device, self.delimiter = tuple(device), delimiter
        self.headers, self.skip_lines = frozenset(headers), skip_lines
        self.default_name = device_name

    def begin(self, name):
        """A new input starts."""

    def device_name(self, key):
        return key.decode("utf-8", "replace") if self.device else self.default_name

    def parse(self, name, text, first):
        """The Rows of a block of whole lines that starts at line ``first``."""
        if first <= self.skip_lines:
            drop = self.skip_lines - first + 1
            cut = _after_lines(text, drop)
            first += text.count(b"\n", 0, cut)
            text = text[cut:]
        if first == 1 and self.headers:
            end = text.find(b"\n")
            if text[:end].strip().lower().replace(b" ", b"") in self.headers:
                text, first = text[end + 1:], 2
        sep, width = self.delimiter, self.fields
        n = uniform_lines(text, width, sep)
        whole_block = n is not None
        if sep is None:  # fields apart by blanks (runs of them, too)
            if not whole_block:
                n = text.count(b"\n")
                whole_block = list(map(len, map(bytes.split, text.split(b"\n")[:-1]))).count(width) == n
            flat = text.split() if whole_block else None
        else:
            flat = text.replace(b"\n", sep).split(sep) if whole_block else None
        if whole_block and n:
            columns = [flat[i:n * width:width] for i in range(width)]
            lines = line_numbers(first, n)
        else:
            columns, lines = self._walk(name, text, first)
        return self._rows(name, columns, lines, plain_text(text))

    def _walk(self, name, text, first):
        """Columns of the non-empty lines, each checked for its number of fields."""
        rows, lines = [], []
        for k, line in enumerate(text.split(b"\n")[:-1]):
            if not line.strip():
                continue
            parts = line.split(self.delimiter) if self.delimiter is not None else line.split()
            if len(parts) != self.fields:
                raise InputError(name, first + k, f"{len(parts)} fields, expected {self.fields}")
            rows.append(parts)
            lines.append(first + k)
        if not rows:
            return [[] for _ in range(self.fields)], line_numbers(first, 0)
        return [list(col) for col in zip(*rows)], array("q", lines)

    def _rows(self, name, columns, lines, plain):
        n = len(lines)
        used = {self.time, self.offset, self.size, *self.device} | ({self.op} if self.op is not None else set())
        if not plain:
            for i in used:  # "1, 2": fields padded with blanks
                joined = b"".join(columns[i])
                if b" " in joined or b"\t" in joined:
                    columns[i] = list(map(bytes.strip, columns[i]))
        times = scaled(name, columns[self.time], lines, "time", *self.time_unit, plain=plain)
        offsets = whole(name, columns[self.offset], lines, "offset", plain=plain)
        sizes = whole(name, columns[self.size], lines, "size", plain=plain)
        if self.offset_unit != 1:
            offsets = list(map(mul, offsets, repeat(self.offset_unit)))
        if self.size_unit != 1:
            sizes = list(map(mul, sizes, repeat(self.size_unit)))
        ops = bytes([self.default_op]) * n if self.op is None else self._ops(name, columns[self.op], lines)
        keys, key = None, b""
        if self.device and n:
            parts = [columns[i] for i in self.device]
            if all(p.count(p[0]) == n for p in parts):  # one device (an MSR file): no key per IO
                key = b"_".join(p[0] for p in parts)
            else:
                keys = parts[0] if len(parts) == 1 else [b"_".join(p) for p in zip(*parts)]
        rows = Rows(times, offsets, sizes, ops, lines, keys, key)
        check_extents(name, rows)
        return rows

    def _ops(self, name, column, lines):
        try:
            return bytes(map(self.op_values.__getitem__, column))
        except KeyError:
            i = next(i for i, v in enumerate(column) if v not in self.op_values)
            known = ", ".join(repr(k.decode()) for k in self.op_values)
            raise InputError(name, lines[i], f"operation {column[i][:40].decode('utf-8', 'replace')!r} is not one "
                             f"of {known}") from None


def _after_lines(text, count):
    """The offset in ``text`` just after its first ``count`` lines."""
    at = 0
    for _ in range(count):
        nl = text.find(b"\n", at)
        if nl < 0:
            return len(text)
        at = nl + 1
    return at
