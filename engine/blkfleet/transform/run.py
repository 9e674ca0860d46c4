"""``blkfleet transform``: every input file's IOs through the Plan, the streams that land on one output device and
CPU merged by time, each output written as a native replay file, then origin.json.

Output files: ``DEV.BASE.CPU`` for every output device (its name after renames) and every CPU number any of its
inputs has (a device merged from inputs with 2 and 1 CPU files gets files 0 and 1; file 0 holds the IOs of
both inputs' CPU 0, merged by time). One output file is written at a time, from one chunk per input stream,
so memory does not grow with the traces; all are put in place at the end, or none.
"""

import os

from ..errors import BlkfleetError
from ..files import trusted_dir
from ..names import name_problem
from ..streams import origin
from ..streams.merge import merge
from ..streams.nativeout import NativeFile
from ..streams.sources import open_source


def check_inputs(directories):
    """Each input directory must be one nobody but root (or us) can change (``files.trusted_dir``), as ``record``'s
    -d: what is read becomes replay files that a later replay with -W writes (or a bundle's), so another user who
    could swap an input's files, or a link on the way, would choose those IOs. The callers check before they make
    or write anything (``transform``'s output directory, ``bundle create``'s)."""
    for directory in directories:
        if not os.path.isdir(directory):
            raise BlkfleetError(f"{directory}: not a directory")
        trusted_dir(directory, "input directory", create=False)


class Input:
    """One input directory: its Source, start offset (ns after the mix's start) and rate factor."""

    def __init__(self, directory, base, offset=0, rate=1.0):
        self.directory = directory
        self.source = open_source(directory, base)
        self.offset, self.rate = offset, rate
        self.first = first_time(self.source)


def first_time(source):
    """The earliest first IO of a Source's files (None when they hold none)."""
    firsts = []
    for paths in source.devices.values():
        for path in paths:
            for chunk in source.file_chunks(path):
                if len(chunk):
                    firsts.append(min(chunk.times))
                    break
    return min(firsts) if firsts else None


def output_name(renames, index, device):
    """The output device of ``device`` of input ``index``: ``renames`` {(index or None, old): new}."""
    return renames.get((index, device)) or renames.get((None, device)) or device


def plan_outputs(inputs, renames):
    """{(device, cpu): [(input index, device, path)]} in device then CPU order."""
    outputs = {}
    for k, inp in enumerate(inputs):
        for device, paths in inp.source.devices.items():
            name = output_name(renames, k, device)
            problem = name_problem(name)
            if problem:
                raise BlkfleetError(f"invalid output device name {name!r}: {problem}")
            for cpu, path in enumerate(paths):
                outputs.setdefault((name, cpu), []).append((k, device, path))
    return dict(sorted(outputs.items()))


class Written:
    """The output files, finished but still ``.partial``: ``commit()`` puts them in place, ``abort()`` removes them.
    @files: [(NativeFile, device, sources, cpu)]."""

    def __init__(self):
        self.files = []

    def commit(self):
        for out, *_ in self.files:
            out.commit()

    def abort(self):
        for out, *_ in self.files:
            out.abort()

    def summaries(self):
        """The FileSummary of every output file (as ``blkfleet record`` reports its files)."""
        return [out.summary(name, sources, cpu) for out, name, sources, cpu in self.files]


def transform(inputs, output_dir, base, plan, renames):
    """Transform ``inputs`` (Input objects) into ``output_dir``; returns the Written files (not yet in place)."""
    firsts = [inp.first for inp in inputs if inp.first is not None]
    if not firsts:
        raise BlkfleetError("the inputs hold no IOs")
    plan.t0 = min(firsts)
    written = Written()
    try:
        for (name, cpu), parts in plan_outputs(inputs, renames).items():
            devs = {inputs[k].source.dev_t(device) for k, device, _path in parts}
            out = NativeFile(os.path.join(output_dir, f"{name}.{base}.{cpu}"),
                             device=devs.pop() if len(devs) == 1 else 0, cpu=cpu)
            written.files.append((out, name, ",".join(f"{k}:{device}" for k, device, _path in parts), cpu))
            for chunk in merge([_mapped(plan, inputs[k], path) for k, _device, path in parts]):
                out.add(chunk)
            out.finish()
    except BaseException:
        written.abort()
        raise
    return written


def _mapped(plan, inp, path):
    """The IOs of one input file through the plan."""
    for chunk in inp.source.file_chunks(path):
        out = plan.apply(chunk, inp.first, inp.offset, inp.rate, path)
        if len(out):
            yield out


def record_origin(output_dir, inputs, options, counts):
    doc = origin.step("transform", [(os.path.basename(os.path.abspath(i.directory)), None,
                                     origin.read(i.directory)) for i in inputs], options, counts)
    problem = origin.trouble(doc)
    if problem:
        raise BlkfleetError(f"cannot record the origin: {problem}")
    origin.write(output_dir, doc)
    return doc
