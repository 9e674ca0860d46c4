"""What a capture whose daemon died still yields: its ring buffers, its raw pages, its partial files.

``drain`` runs under the tracer lock, just before the tracer is put back (``tracefs._recover_snapshot``): a
daemon killed with SIGKILL leaves in the kernel every event it had not read yet, up to a whole buffer (76 IOs were
lost 2 s after the last IO before this existed). It switches the dead capture's tracing off and appends what
each CPU's ring buffer holds, partial pages included, to ``DIR/raw/cpuN``, then writes into the capture's
run record how many bytes and events it recovered. ``convert_dead`` then turns the raw pages (or the files
blktrace staged) into ``DEV.blktrace.CPU`` files.
"""

import os
import stat

from ..errors import BlkfleetError
from ..files import create_new, untrusted_reason
from ..names import name_problem
from . import bioevents, outputs, rawpages, rundir, tracefs
from .blktrace import summarize_files
from .split import cpu_count

PAGE_SIZES = tuple(1 << n for n in range(12, 21))


def _open_raw(path):
    """``DIR/raw/cpuN`` to append to: a regular root-owned file (created if missing), never through a link."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return create_new(path, 0o600)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()):
        os.close(fd)
        raise BlkfleetError(f"{path}: not a regular file of ours")
    return fd


def _append_buffer(src, dst, layout, decoder, stats, cpu):
    """Append the pages ``src`` (a trace_pipe_raw) still holds to ``dst``; returns bytes appended."""
    fd_in = os.open(src, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fd_out = _open_raw(dst)
        try:
            size = os.fstat(fd_out).st_size
            whole = size - size % layout.page_size  # a page the daemon was writing when it died is dropped
            if whole != size:
                os.ftruncate(fd_out, whole)
            os.lseek(fd_out, whole, os.SEEK_SET)
            total = 0
            while True:
                try:
                    data = os.read(fd_in, layout.page_size)
                except BlockingIOError:
                    break
                if not data:
                    break
                page = data.ljust(layout.page_size, b"\0")
                decoder.records(memoryview(page), layout, stats, cpu)
                view = memoryview(page)
                while view:
                    view = view[os.write(fd_out, view):]
                total += len(page)
            return total
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def drain(tracing, owner, instance=False):
    """Copy what the ring buffers of the dead capture ``owner`` still hold into its raw files.

    ``owner`` (from the root-only tracer snapshot): ``run_id``, ``key``, ``mode``, ``raw_dir``. Returns
    ``{"bytes", "events", "error"}`` (also written into the capture's run record), or None when the mode keeps
    no raw pages. Never raises: the tracer is restored whatever happens here.
    """
    if not isinstance(owner, dict) or owner.get("mode") not in ("raw", "events"):
        return None
    result = {"bytes": 0, "events": 0, "error": None}
    try:
        base = bioevents.instance_dir(tracing) if owner["mode"] == "events" else tracing
        if owner["mode"] == "events" and not instance:
            raise BlkfleetError("the snapshot names no events instance")
        try:
            tracefs.write_setting(os.path.join(base, "tracing_on"), "0")
        except BlkfleetError:
            pass
        raw_dir = owner.get("raw_dir")
        if not isinstance(raw_dir, str) or not os.path.isabs(raw_dir):
            raise BlkfleetError("no raw directory to salvage into")
        reason = untrusted_reason(raw_dir)
        if reason:
            raise BlkfleetError(f"{raw_dir}: not salvaged into: {reason}")
        layout = rawpages.PageLayout.from_tracefs(tracing)
        if owner["mode"] == "events":
            decoder = bioevents.decoder(tracing, layout.byteorder)
        else:
            decoder = rawpages.BlkDecoder(rawpages.blk_entry_type(tracing), layout.byteorder)
        stats = rawpages.PageStats()
        per_cpu = os.path.join(base, "per_cpu")
        for name in sorted(os.listdir(per_cpu)):
            if name.startswith("cpu") and name[3:].isascii() and name[3:].isdigit():
                src = os.path.join(per_cpu, name, "trace_pipe_raw")
                if os.path.exists(src):
                    result["bytes"] += _append_buffer(src, os.path.join(raw_dir, name), layout, decoder, stats,
                                                      int(name[3:]))
        result["events"] = stats.records
    except (OSError, BlkfleetError) as e:
        result["error"] = str(e) if isinstance(e, BlkfleetError) else f"{e.filename or ''}: {e.strerror or e}"
    key, run_id = owner.get("key"), owner.get("run_id")
    if isinstance(key, str) and isinstance(run_id, str):
        try:
            rundir.update(key, run_id, salvaged=result)
        except OSError:
            pass
    return result


def _int_in(value, low, high):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _event_fields(event_id, fields, layout, names):
    """(event id, {name: (offset, size)}) of one event from the state, validated: offsets inside a page."""
    if not _int_in(event_id, 0, 65535) or not isinstance(fields, dict):
        raise BlkfleetError("the state has no valid event_id/event_fields")
    checked = {}
    for name in names:
        value = fields.get(name)
        if not (isinstance(value, list) and len(value) == 2 and _int_in(value[0], 0, layout.page_size)
                and _int_in(value[1], 1, 64)):
            raise BlkfleetError(f"the state's event field {name!r} is not [offset, size]")
        checked[name] = tuple(value)
    if checked["sector"][1] not in (4, 8):
        raise BlkfleetError("the state's sector field is neither 4 nor 8 bytes")
    return event_id, checked


def _events_decoder(info, layout):
    """The events mode's decoder from ``backend_info``: the queue event and the completion events it names."""
    queue = _event_fields(info.get("event_id"), info.get("event_fields"), layout, bioevents.FIELDS)
    completions = {}
    listed = info.get("completion_events") or []
    if not isinstance(listed, list):
        raise BlkfleetError("the state's completion_events is not a list")
    known = {bioevents.event_name(e): e for e in bioevents.COMPLETIONS}
    for entry in listed:
        if not isinstance(entry, dict) or entry.get("event") not in known:
            raise BlkfleetError("the state's completion_events holds an unknown event")
        completions[known[entry["event"]]] = _event_fields(entry.get("event_id"), entry.get("event_fields"), layout,
                                                           bioevents.FIELDS + ("error",))
    return bioevents.BlockEventDecoder(queue, completions, layout.byteorder)


def _dev_numbers(names):
    numbers = {}
    for name in names:
        try:
            with open(f"/sys/class/block/{name}/dev") as f:
                major, minor = (int(x) for x in f.read().split(":"))
            numbers[major << 20 | minor] = name
        except (OSError, ValueError):
            pass
    return numbers


def convert_dead(outdir, state):
    """The summary of a capture whose daemon died: its raw pages converted, or its staged files moved into
    ``outdir`` and counted. Parameters come from the validated state; BlkfleetError/OSError on failure."""
    info = state.get("backend_info") or {}
    names = [n for n in state.get("devices") or [] if not name_problem(n)]
    staging = os.path.join(outdir, outputs.STAGING)
    if state.get("backend") == "ftrace" and state.get("mode") in ("raw", "events"):
        page_size = info.get("page_size", 4096)
        ncpus = info.get("ncpus", 1)
        if page_size not in PAGE_SIZES or not _int_in(ncpus, 1, cpu_count()):
            raise BlkfleetError("the state has no valid page_size/ncpus")
        layout = rawpages.PageLayout(page_size=page_size)
        raw_dir = os.path.join(outdir, outputs.RAW)
        raw_files = {}
        if os.path.isdir(raw_dir) and not os.path.islink(raw_dir):
            for f in os.listdir(raw_dir):
                path = os.path.join(raw_dir, f)
                if f.startswith("cpu") and f[3:].isascii() and f[3:].isdigit() and len(f) < 9 \
                        and stat.S_ISREG(os.lstat(path).st_mode):
                    raw_files[int(f[3:])] = path
        if state["mode"] == "events":
            decoder = _events_decoder(info, layout)
        else:
            blk_type = info.get("blk_entry_type")
            decoder = rawpages.BlkDecoder(blk_type if _int_in(blk_type, 0, 65535) else None, layout.byteorder)
        numbers = _dev_numbers(names)
        outputs.remove(staging)
        summary = rawpages.convert(raw_files, outputs.make_staging(outdir), layout, decoder, ncpus=ncpus,
                                   names=numbers, devices=list(numbers))
        outputs.publish(staging, outdir)
        return summary
    outputs.publish(staging, outdir)
    return summarize_files(outdir, names)
