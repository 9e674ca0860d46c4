"""What each worker replays: per-CPU streams read from replay files, timed against one global genesis."""

import heapq
from array import array

from ..errors import BlkfleetError, TraceFormatError
from ..names import check_name
from ..percpu import find_devices, find_per_cpu
from ..replayfile import iter_ios, open_replay


class Stream:
    """One replay file's IOs as arrays: absolute times, sectors, sizes, ops and flags."""

    def __init__(self, device, cpu, path):
        self.device = device
        self.cpu = cpu
        self.path = path
        self.times = array("q")
        self.sectors = array("q")
        self.nbytes = array("q")
        self.ops = array("b")
        self.flags = array("b")
        with open_replay(path) as reader:
            self.format = reader.kind
            for t, sector, nbytes, op, flags in iter_ios(reader):
                self.times.append(t)
                self.sectors.append(sector)
                self.nbytes.append(nbytes)
                self.ops.append(op)
                self.flags.append(flags)
        if any(b < a for a, b in zip(self.times, self.times[1:])) and self.format == "native":
            raise TraceFormatError(path, 0, "IO times go backwards")

    def __len__(self):
        return len(self.times)


def load_streams(directory, devices, base="replay", find=False):
    """Every non-empty replay file of the devices (``-F``: every device with ``*.BASE.*`` files)."""
    names = list(dict.fromkeys(devices))
    if find:
        names += [d for d in find_devices(directory, base) if d not in names]
    if not names:
        raise BlkfleetError("no device given (name devices, or use -F to find replay files)")
    streams = []
    for dev in names:
        check_name(dev, "recorded device name")
        for cpu, path in enumerate(find_per_cpu(directory, dev, base)):
            stream = Stream(dev, cpu, path)
            if len(stream):
                streams.append(stream)
    if not streams:
        raise BlkfleetError(f"{directory}: the replay files of {', '.join(names)} hold no IO")
    return streams


class Plan:
    """The IOs one worker issues, merged in time order: due time (ns after the start, already divided by
    the acceleration factor), target index, byte offset, size, op and flags."""

    def __init__(self, cpu, streams, genesis, acc, target_of):
        self.cpu = cpu
        self.streams = [f"{s.device}.{s.cpu}" for s in streams]
        self.due = array("q")
        self.target = array("b")
        self.offset = array("q")
        self.nbytes = array("q")
        self.ops = array("b")
        self.flags = array("b")
        times, sectors = array("q"), array("q")
        for s in streams:
            times += s.times
            sectors += s.sectors
            self.target += array("b", [target_of[s.device]]) * len(s)
            self.nbytes += s.nbytes
            self.ops += s.ops
            self.flags += s.flags
        ordered = all(_ascending(s.times) for s in streams)
        if len(streams) > 1:  # merged in time order (equal times keep the streams' order)
            if ordered:
                order = sorted(range(len(times)), key=times.__getitem__)
            else:  # a btrecord file whose time steps back: keep each file's order, as btreplay does
                starts = [0]
                for s in streams:
                    starts.append(starts[-1] + len(s))
                order = [k for _t, k in heapq.merge(*[zip(s.times, range(a, a + len(s)))
                                                      for s, a in zip(streams, starts)])]
            times = array("q", [times[k] for k in order])
            sectors = array("q", [sectors[k] for k in order])
            for name in ("target", "nbytes", "ops", "flags"):
                column = getattr(self, name)
                setattr(self, name, array(column.typecode, [column[k] for k in order]))
        if acc == 1:
            self.due = array("q", [t - genesis for t in times])
        else:
            self.due = array("q", [int((t - genesis) / acc) for t in times])
        if not ordered:  # an IO timed before the one ahead of it goes right after it (btreplay: at once)
            due, latest = self.due, 0
            for k, t in enumerate(due):
                if t < latest:
                    due[k] = latest
                else:
                    latest = t
        self.offset = array("q", [sector * 512 for sector in sectors])

    def __len__(self):
        return len(self.due)


def _ascending(values):
    return all(a <= b for a, b in zip(values, values[1:]))


def make_plans(streams, workers, acc, target_of):
    """Streams onto ``workers`` workers as btreplay does (recorded CPU mod workers), one global genesis."""
    genesis = min(s.times[0] for s in streams)
    by_worker = {}
    for s in streams:
        by_worker.setdefault(s.cpu % workers, []).append(s)
    return [Plan(cpu, group, genesis, acc, target_of) for cpu, group in sorted(by_worker.items())], genesis
