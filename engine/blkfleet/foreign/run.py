"""``blkfleet import``: read foreign traces block by block, split their IOs by device, put each device's IOs in time
order and write them as native replay files (``DEV.BASE.0``, one per device) with an origin.json.

Memory holds one block of lines (1 MiB) and, per device, the open bunch and the IOs within the tolerance: it
does not grow with the trace. Every file is written as ``.partial`` and put in place only when the whole import
succeeded; a failure leaves the output directory as it was.

Times: formats that count from the start of the run (fio iologs, blkparse) keep their times; those with wall
clock times (Unix or Windows epochs) count from their first IO (less the tolerance), so that every time fits the
replay file's 63 bits (a 2007 Windows filetime in ns does not). ``time_base_ns`` in the summary is what was
taken off.
"""

import os
import re
from array import array
from collections import Counter
from itertools import repeat
from operator import and_, rshift, sub

from ..errors import BlkfleetError
from ..files import trusted_dir
from ..names import name_problem
from ..replayfile.reader import MAX_TIME, IOChunk
from ..streams import origin
from ..streams.nativeout import NativeFile
from ..streams.quantities import seconds
from .inputs import InputError, blocks, members
from .ordering import Ordered

MAX_DEVICES = 256  # each holds an open file until the end (a bundle holds at most 1024 devices)


class Device:
    """One output device: where its IOs go (a NativeFile, or what ``Importer.output`` makes), its order keeper."""

    def __init__(self, name, out, tolerance):
        self.name, self.out = name, out
        self.order = Ordered(tolerance)

    def add(self, name, chunk, lines):
        for ready in self.order.add(name, chunk, lines):
            self.out.add(ready, checked=True)

    def finish(self):
        for ready in self.order.finish():
            self.out.add(ready, checked=True)


class Importer:
    """One import: ``fmt`` (a format object of formats.py or a CsvLayout), ``renames`` {source key (str): device
    name}, ``select`` (source keys to keep, or None for all), ``tolerance`` (ns)."""

    def __init__(self, fmt, output_dir, base="replay", renames=None, select=None, tolerance=0, output=None):
        self.fmt, self.output_dir, self.base = fmt, output_dir, base
        self.output = output or self._file
        self.renames, self.select = dict(renames or {}), None if select is None else set(select)
        self.tolerance = tolerance
        self.devices = {}  # source key (bytes) -> Device, or None when not selected
        self.by_name = {}  # device name -> Device (renames can merge keys)
        self.unselected = Counter()  # source key -> IOs left out
        self.time_base = None
        self.unaligned = 0
        self.inputs = []

    def read(self, paths):
        """Read every input into the replay files, still ``.partial`` (``commit`` puts them in place); a failure
        removes them."""
        try:
            for path in paths:
                for name, stream in members(path):
                    self._input(name, stream)
            for device in self.by_name.values():
                device.finish()
            if not self.by_name:
                raise BlkfleetError("no IOs imported: the inputs hold none" +
                                    (" of the selected devices" if self.unselected else ""))
        except BaseException:
            self.abort()
            raise

    def _file(self, device_name, dev_t):
        return NativeFile(os.path.join(self.output_dir, f"{device_name}.{self.base}.0"), device=dev_t)

    def commit(self):
        for device in self.by_name.values():
            device.out.close()

    def abort(self):
        for device in self.by_name.values():
            device.out.abort()

    def _input(self, name, stream):
        self.fmt.begin(name)
        ios = 0
        text, first = b"", 1
        for text, first in blocks(name, stream):
            rows = self.fmt.parse(name, text, first)
            if len(rows):
                ios += len(rows)
                self._rows(name, rows)
        self.inputs.append({"name": name, "lines": first - 1 + text.count(b"\n"), "ios": ios})

    def _rows(self, name, rows):
        if self.time_base is None:
            self.time_base = 0 if self.fmt.relative_time else max(rows.times[0] - self.tolerance, 0)
        if rows.keys is None:
            self._device_rows(name, self._device(name, rows.key, rows.lines[0], rows.dev_t), rows)
            return
        devices = {}  # the IOs of each output device (keys renamed to one device stay in file order)
        for i, key in enumerate(rows.keys):
            device = self.devices.get(key, False)
            if device is False:
                device = self._device(name, key, rows.lines[i], rows.dev_t)
            devices.setdefault(device, []).append(i)
        for device, index in devices.items():
            mask = bytearray(len(rows))
            for i in index:
                mask[i] = 1
            self._device_rows(name, device, rows.select(mask))

    def _device(self, name, key, line, dev_t):
        """The output Device of a source key (None: not selected), made at its first IO."""
        device = self.devices.get(key, False)
        if device is False:
            device = self._new_device(name, key, line, dev_t.get(key, 0))
            self.devices[key] = device
        return device

    def _device_rows(self, name, device, rows):
        if device is None:
            self.unselected.update([rows.key] * len(rows) if rows.keys is None else rows.keys)
            return
        base = self.time_base
        times = array("q")
        try:
            times.extend(map(sub, rows.times, repeat(base)) if base else rows.times)
        except OverflowError:
            times = None
        if times is None or min(times) < 0:
            times = [t - base for t in rows.times]
            i = next(i for i, t in enumerate(times) if t < 0 or t > MAX_TIME)
            if times[i] > MAX_TIME:
                raise InputError(name, rows.lines[i], "time is 2^63 ns or more after the first IO")
            early = seconds(base + self.tolerance - rows.times[i])
            raise InputError(name, rows.lines[i], f"time goes backwards: {early} s before the first IO of the trace "
                             f"(tolerance {seconds(self.tolerance)} s; --tolerance SECONDS puts IOs that much out of "
                             "order back in order)")
        offsets = rows.offsets
        misaligned = len(offsets) - list(map(and_, offsets, repeat(511))).count(0)
        self.unaligned += misaligned
        chunk = IOChunk(times, array("q", map(rshift, offsets, repeat(9))), array("q", rows.sizes), rows.ops,
                        rows.flags)
        device.add(name, chunk, rows.lines)

    def _new_device(self, name, key, line, dev_t):
        shown = key.decode("utf-8", "replace")
        if self.select is not None and shown not in self.select:
            return None
        device_name = self.renames.get(shown) or self.fmt.device_name(key)
        problem = name_problem(device_name)
        if problem:
            raise InputError(name, line, f"device {shown!r} makes the invalid device name {device_name!r} ({problem}): "
                             "name it with --rename")
        device = self.by_name.get(device_name)
        if device is None:
            if len(self.by_name) >= MAX_DEVICES:
                raise InputError(name, line, f"more than {MAX_DEVICES} devices: choose some with --select, or merge "
                                 "them with --rename")
            device = Device(device_name, self.output(device_name, dev_t), self.tolerance)
            self.by_name[device_name] = device
        return device

    def summary(self):
        """The files written (as ``record --json`` lists its files) and what the import did."""
        files = []
        for d in self.by_name.values():
            sources = sorted(k.decode("utf-8", "replace") for k, v in self.devices.items() if v is d)
            files.append(d.out.summary(d.name, ",".join(sources)))
        return {
            "files": [f.as_dict() for f in files], "inputs": self.inputs, "ios": sum(f.ios for f in files),
            "bytes": sum(f.nbytes for f in files), "time_base_s": seconds(self.time_base or 0),
            "unaligned": self.unaligned,
            "reordered": sum(d.order.reordered for d in self.by_name.values()),
            "left_out": {k.decode("utf-8", "replace"): n for k, n in sorted(self.unselected.items())},
            "skipped": getattr(self.fmt, "skipped", 0), "ignored_waits": getattr(self.fmt, "ignored_waits", 0),
        }, files


def prepare_output(directory, base, force):
    """The output directory (created when missing): it must not hold replay files of ``base`` or an origin.json
    unless ``force``, which removes them (before the new files are put in place). It must be one nobody but root
    (or us) can change (``files.trusted_dir``): a later replay trusts what it holds."""
    trusted_dir(directory, "output directory")
    pattern = re.compile(r"[^.]+\." + re.escape(base) + r"\.\d+(\.partial)?\Z")
    old = sorted(n for n in os.listdir(directory) if pattern.match(n) or n == origin.FILE)
    if old and not force:
        raise BlkfleetError(f"{directory}: holds {', '.join(old[:3])}{' ...' if len(old) > 3 else ''} of an earlier "
                            "run (--force replaces them)")
    return old


def remove_old(directory, old, keep):
    """Remove the files of an earlier run that this one did not replace."""
    for name in old:
        if name not in keep:
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:
                pass
