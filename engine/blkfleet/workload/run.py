"""``blkfleet stats``: the figures of every device of a capture, a directory of replay files (an import's too) or
foreign trace files, one pass over each device's IOs in time order."""

import os

from ..foreign.formats import FORMATS
from ..foreign.run import Importer
from ..streams import chunks as ch
from ..streams import origin
from ..streams.merge import merge
from ..streams.sources import capture_chunks, open_source
from ..trace.matching import has_completions
from .completions import Completions, completion_chunks
from .figures import DeviceFigures


def directory_stats(directory, base="replay", devices=(), phases=10, phase_ns=None):
    """The stats document of a capture or a directory of replay files."""
    source = open_source(directory, base, devices)
    out = {}
    for device, paths in source.devices.items():
        figures, done = DeviceFigures(), None
        if source.kind == "capture" and has_completions(paths):
            done = Completions()
            k = len(paths)
            streams = [capture_chunks(p) for p in paths] + [completion_chunks(p) for p in paths]
            for chunk, tags in merge(streams, tagged=True):
                is_c = bytes(t >= k for t in tags)
                figures.add(ch.keep(chunk, bytes(1 - c for c in is_c)) if 1 in is_c else chunk)
                done.events(chunk, is_c)
        else:
            for chunk in source.stream(device):
                figures.add(chunk)
        doc = figures.figures(phases, phase_ns)
        doc["completions"] = done.figures() if done else None
        out[device] = doc
    return {"source": {"kind": source.kind, "inputs": [os.path.basename(os.path.abspath(directory))],
                       "format": None}, "devices": out, "origin": origin.read(directory)}


class _Sink:
    """Import's per-device output, feeding the figures instead of a replay file."""

    def __init__(self):
        self.figures = DeviceFigures()

    def add(self, chunk, checked=False):
        self.figures.add(chunk)

    def abort(self):
        pass


def foreign_stats(fmt_name, paths, tolerance=0, select=None, renames=None, phases=10, phase_ns=None):
    """The stats document of foreign trace files, read as ``blkfleet import`` reads them."""
    sinks = {}

    def output(name, dev_t):
        sinks[name] = _Sink()
        return sinks[name]

    importer = Importer(FORMATS[fmt_name][0](), None, renames=renames, select=select, tolerance=tolerance,
                        output=output)
    importer.read(paths)
    devices = {}
    for name, sink in sinks.items():
        doc = sink.figures.figures(phases, phase_ns)
        doc["completions"] = None
        devices[name] = doc
    return {"source": {"kind": "foreign", "inputs": [os.path.basename(p) for p in paths], "format": fmt_name},
            "devices": devices, "origin": None}
