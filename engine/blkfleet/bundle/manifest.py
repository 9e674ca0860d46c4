"""The bundle manifest (``manifest.json``): what a bundle holds, built from replay files, and its identity.

Only content goes in: no creation time and no controller paths, so the same replay files, engine and options
always give the same manifest, the same bundle id and the same bundle bytes.

A manifest is checked against its schema and then against itself: the totals, the devices and
``replay.devices`` must be what ``files`` add up to, every file is ``replay/DEV.BASE.CPU`` of a listed device with
CPUs numbered from 0, and the replay files together hold at most MAX_REPLAY_BYTES. Format version 2 only adds
``record.capture`` (how the traces compared with their capture's summary), version 3 ``origin`` (how import and
transform made the replay files: the replay directory's origin.json); a manifest is written with the lowest
version that holds its content, so bundles of earlier versions and their ids are unchanged.
"""

import hashlib
import json
import os
import re

from .. import __version__
from ..errors import BlkfleetError
from ..files import open_file, read_json
from ..names import name_problem
from ..percpu import find_devices, find_per_cpu
from ..replayfile import iter_ios, open_replay
from ..replayfile.ops import OP_NAMES
from ..streams.origin import read as read_origin
from .schema import load_schema, problem, validate

FORMAT = "blkfleet-bundle"
FORMAT_VERSION = 3  # the newest this engine reads
FORMAT_VERSION_CAPTURE = 2  # written when record.capture is present (and no origin), else 1
FORMAT_VERSION_ORIGIN = 3  # written when origin is present
MANIFEST = "manifest.json"
ENGINE = "engine.pyz"
REPLAY_DIR = "replay"
REQUIRES_PYTHON = ">=3.9"
SCHEMA_FILE = "manifest.schema.json"
RECORD_SUMMARY_SCHEMA = "record-summary.schema.json"
TRACE_INFO_FILE = "capture.json"  # what --trace-dir is read for, besides its DEV.blktrace.N files
TRACE_INFO_MAX = 16 << 20
CHUNK = 1 << 20
MAX_REPLAY_BYTES = 64 << 30  # all replay files of a bundle together (24 bytes per IO: over 2.8 billion IOs)
MAX_IO_BYTES = 1 << 32  # one IO's length is a u32


def canonical(doc):
    """The bytes hashed for the bundle id: sorted keys, no whitespace, ASCII."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def bundle_id(manifest):
    """sha256 of the canonical manifest without its ``bundle_id``: it names the bundle's content."""
    return hashlib.sha256(canonical({k: v for k, v in manifest.items() if k != "bundle_id"})).hexdigest()


def encode(manifest):
    """``manifest.json`` as stored in a bundle."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")


def check(manifest, where=MANIFEST):
    """Schema, format version, bundle id and consistency of a parsed manifest; raise BlkfleetError naming the
    problem."""
    if isinstance(manifest, dict) and manifest.get("format") == FORMAT:
        version = manifest.get("format_version")
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise BlkfleetError(
                f"{where}: bundle format version {version} is newer than this engine's ({FORMAT_VERSION})"
            )
    try:
        validate(manifest, load_schema(SCHEMA_FILE))
    except BlkfleetError as e:
        raise BlkfleetError(f"{where}: invalid manifest: {e}") from None
    if bundle_id(manifest) != manifest["bundle_id"]:
        raise BlkfleetError(f"{where}: bundle_id does not match the manifest's content (the manifest was altered)")
    trouble = inconsistency(manifest)
    if trouble:
        raise BlkfleetError(f"{where}: invalid manifest: {trouble}")
    return manifest


def version_of(m):
    """The format version a manifest's content needs: 3 with ``origin``, else 2 with ``record.capture``, else 1."""
    if "origin" in m:
        return FORMAT_VERSION_ORIGIN
    return FORMAT_VERSION_CAPTURE if "capture" in m["record"] else 1


def _tally(entries):
    ops = empty_ops()
    for e in entries:
        add_ops(ops, e["ops"])
    return {"ios": sum(e["ios"] for e in entries), "bytes": sum(e["bytes"] for e in entries), "ops": ops}


def inconsistency(m):
    """What in a schema-valid manifest does not add up (one line), or None."""
    version = m["format_version"]
    if version != version_of(m):
        if version >= FORMAT_VERSION_ORIGIN or "origin" in m:
            return f"format version {version} with{'' if 'origin' in m else 'out'} origin"
        return (f"format version {version} with{'out' if version >= FORMAT_VERSION_CAPTURE else ''} "
                "record.capture")
    base = m["replay"]["base"]
    for what, name in [("replay.base", base)] + [("device name", d["name"]) for d in m["devices"]]:
        trouble = name_problem(name)
        if trouble:
            return f"{what} {name!r}: {trouble}"
    names = [d["name"] for d in m["devices"]]
    if len(set(names)) != len(names):
        return "a device is listed twice"
    if m["replay"]["devices"] != names:
        return f"replay.devices {m['replay']['devices']} differ from the devices {names}"
    by_device = {name: [] for name in names}
    seen = set()
    for i, f in enumerate(m["files"]):
        where = f"files[{i}]"
        if f["device"] not in by_device:
            return f"{where}: device {f['device']!r} is not among the devices"
        if f["path"] != f"{REPLAY_DIR}/{f['device']}.{base}.{f['cpu']}":
            return f"{where}: path {f['path']!r} is not {REPLAY_DIR}/{f['device']}.{base}.{f['cpu']}"
        if f["path"] in seen:
            return f"{where}: {f['path']} is listed twice"
        seen.add(f["path"])
        trouble = _file_inconsistency(f)
        if trouble:
            return f"{where}: {trouble}"
        by_device[f["device"]].append(f)
    for d in m["devices"]:
        entries = by_device[d["name"]]
        if sorted(e["cpu"] for e in entries) != list(range(len(entries))) or d["cpus"] != len(entries):
            return f"device {d['name']}: {d['cpus']} CPUs, but files for CPUs {sorted(e['cpu'] for e in entries)}"
        if {k: d[k] for k in ("ios", "bytes", "ops")} != _tally(entries):
            return f"device {d['name']}: its IOs, bytes or ops are not the sum of its files'"
        devs = {e["dev"] for e in entries if e["dev"]}
        if devs - {d["dev"]}:
            return f"device {d['name']}: dev {d['dev']} differs from its files' {sorted(devs)}"
    t = m["totals"]
    if (t["files"], t["size"]) != (len(m["files"]), sum(f["size"] for f in m["files"])):
        return "totals.files or totals.size is not what the files add up to"
    if {k: t[k] for k in ("ios", "bytes", "ops")} != _tally(m["files"]):
        return "totals.ios, bytes or ops are not the sum of the files'"
    if t["size"] > MAX_REPLAY_BYTES:
        return f"the replay files hold {t['size']} bytes, more than {MAX_REPLAY_BYTES} (64 GiB)"
    firsts = [f["first_ns"] for f in m["files"] if f["first_ns"] is not None]
    lasts = [f["last_ns"] for f in m["files"] if f["last_ns"] is not None]
    w = m["capture_window"]
    want = (min(firsts), max(lasts), max(lasts) - min(firsts)) if firsts else (None, None, 0)
    if (w["first_ns"], w["last_ns"], w["span_ns"]) != want:
        return "capture_window is not the files' first and last IO times"
    formats = {f["format"] for f in m["files"]}
    if m["record"]["format"] != (formats.pop() if len(formats) == 1 else "mixed"):
        return f"record.format {m['record']['format']!r} is not what the files are"
    return None


def _file_inconsistency(f):
    if (f["ios"], f["bytes"]) != (sum(v["ios"] for v in f["ops"].values()), sum(v["bytes"] for v in f["ops"].values())):
        return "ios or bytes is not the sum of its ops"
    if any(v["bytes"] > v["ios"] * (MAX_IO_BYTES - 1) for v in f["ops"].values()):
        return "more bytes than its IOs can carry"
    header = 64 if f["format"] == "native" else 32
    if f["ios"] * 24 > max(f["size"] - header, 0):
        return f"{f['ios']} IOs cannot fit in {f['size']} bytes"
    if (f["first_ns"] is None) != (f["ios"] == 0) or (f["last_ns"] is None) != (f["ios"] == 0):
        return "first_ns and last_ns must be set exactly when it holds IOs"
    if f["ios"] and f["first_ns"] > f["last_ns"]:
        return "first_ns is after last_ns"
    return None


def sha256_file(path):
    """(hex sha256, size) of a file."""
    digest = hashlib.sha256()
    size = 0
    with open_file(path) as f:
        while True:
            block = f.read(CHUNK)
            if not block:
                return digest.hexdigest(), size
            digest.update(block)
            size += len(block)


def empty_ops():
    return {name: {"ios": 0, "bytes": 0} for name in OP_NAMES}


def add_ops(into, ops):
    for name, tally in ops.items():
        into[name]["ios"] += tally["ios"]
        into[name]["bytes"] += tally["bytes"]
    return into


def dev_string(value):
    """``major:minor`` from a kernel dev_t (``major << 20 | minor``, 32 bits), "7,1", "7:1" or None."""
    if value is None or value == 0:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value >> 20}:{value & 0xFFFFF}" if 0 < value < 1 << 32 else None
    if not isinstance(value, str) or len(value) > 64:
        return None
    m = re.fullmatch(r"\s*([0-9]{1,10})\s*[:,]\s*([0-9]{1,10})\s*", value)
    return f"{int(m.group(1))}:{int(m.group(2))}" if m else None


def describe_file(path, device, cpu):
    """The manifest entry of one replay file (every IO read: counts, bytes by op, first and last time)."""
    digest, size = sha256_file(path)
    counts = [0] * len(OP_NAMES)
    nbytes = [0] * len(OP_NAMES)
    first = last = None
    with open_replay(path) as reader:
        fmt = reader.kind
        dev = dev_string(getattr(reader, "device", None))
        max_pkts = getattr(reader, "max_pkts", None)
        for time, _sector, n, op, _flags in iter_ios(reader):
            counts[op] += 1
            nbytes[op] += n
            if first is None or time < first:
                first = time
            if last is None or time > last:
                last = time
    ops = {name: {"ios": counts[i], "bytes": nbytes[i]} for i, name in enumerate(OP_NAMES)}
    entry = {
        "path": f"{REPLAY_DIR}/{os.path.basename(path)}", "device": device, "cpu": cpu, "format": fmt,
        "size": size, "sha256": digest, "ios": sum(counts), "bytes": sum(nbytes), "ops": ops,
        "first_ns": first, "last_ns": last, "dev": dev,
    }
    return entry, (max_pkts or None)


def _positive_int(value, path, what, limit=(1 << 63) - 1):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= limit:
        shown = repr(value) if isinstance(value, (int, float, str)) and len(repr(value)) <= 40 else "given"
        raise BlkfleetError(f"{path}: {what} {shown} is not a positive integer (at most {limit})")
    return value


def host_problem(host):
    """Why ``host`` cannot be a manifest's source host, or None."""
    if not isinstance(host, str):
        return "not a string"
    if not 0 < len(host) <= 255 or not host.isprintable():
        return "must be 1 to 255 printable characters"
    return None


def trace_info(trace_dir, devices):
    """What a capture directory tells about the source: ({device: {dev, size, logical_block_size}}, host).

    Reads ``capture.json`` as ``blkfleet capture`` leaves it (docs/capture.md): ``host``, and per device
    ``block_devices.DEV`` (``dev``, ``size`` and ``logical_block_size``, recorded when the capture started), else
    ``summary.devices.DEV.dev``. A directory without capture.json (the blktrace tool's) tells only the dev_t of
    the first record of its DEV.blktrace.N files, which also fills a dev_t capture.json lacks.
    """
    info = {d: {"dev": None, "size": None, "logical_block_size": None} for d in devices}
    path = os.path.join(trace_dir, TRACE_INFO_FILE)
    host = None
    if os.path.exists(path):
        doc = read_json(path, "capture state", max_bytes=TRACE_INFO_MAX)
        if not isinstance(doc, dict):
            raise BlkfleetError(f"{path}: capture state is not a JSON object")
        host = doc.get("host")
        block_devices = doc.get("block_devices") if isinstance(doc.get("block_devices"), dict) else {}
        summary = doc.get("summary") if isinstance(doc.get("summary"), dict) else {}
        summarized = summary.get("devices") if isinstance(summary.get("devices"), dict) else {}
        for dev, got in info.items():
            facts = block_devices.get(dev) if isinstance(block_devices.get(dev), dict) else {}
            stopped = summarized.get(dev) if isinstance(summarized.get(dev), dict) else {}
            got["dev"] = dev_string(facts.get("dev")) or dev_string(stopped.get("dev"))
            got["size"] = _positive_int(facts.get("size"), path, f"{dev} size")
            got["logical_block_size"] = _positive_int(facts.get("logical_block_size"), path,
                                                      f"{dev} logical block size", 1 << 20)
    for dev, got in info.items():
        if got["dev"] is None:
            got["dev"] = _trace_dev(trace_dir, dev)
    if host is not None and host_problem(host):
        raise BlkfleetError(f"{trace_dir}: capture information has an invalid host: {host_problem(host)}")
    return info, host


def _trace_dev(trace_dir, dev):
    from ..trace.reader import TraceReader  # only when a trace directory is given

    try:
        paths = find_per_cpu(trace_dir, dev, "blktrace")
    except BlkfleetError:
        return None
    for path in paths:
        with TraceReader(path) as reader:
            for rec in reader:
                return dev_string(rec.device)
    return None


def read_record_summary(path):
    """A ``blkfleet record --json`` summary, checked against its schema (its capture check against the manifest's
    ``capture_check``)."""
    doc = read_json(path, "record summary", max_bytes=TRACE_INFO_MAX, trusted=True)
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise BlkfleetError(f"{path}: not a 'blkfleet record --json' summary (no \"files\" list)")
    trouble = problem(doc, load_schema(RECORD_SUMMARY_SCHEMA))
    if trouble is None and doc.get("capture") is not None:
        defs = load_schema(SCHEMA_FILE)["$defs"]
        trouble = problem(doc["capture"], {"$ref": "#/$defs/capture_check", "$defs": defs})
        trouble = trouble and "capture" + trouble[1:]
    if trouble:
        raise BlkfleetError(f"{path}: not a valid 'blkfleet record --json' summary: {trouble}")
    return doc


def record_section(record_json, files, formats, max_pkts):
    """The ``record`` object: format, IOs per bunch, and what ``blkfleet record --json`` said, cross-checked
    (with its capture check, when the traces had a capture.json)."""
    section = {
        "format": formats.pop() if len(formats) == 1 else "mixed",
        "max_pkts": max_pkts.pop() if len(max_pkts) == 1 else None,
        "summary": False, "sources": [], "options": None,
    }
    if record_json is None:
        return section
    doc = read_record_summary(record_json)
    by_name = {os.path.basename(item["output"]): item for item in doc["files"]}
    sources = []
    for entry in files:
        name = entry["path"].split("/", 1)[1]
        item = by_name.get(name)
        if item is None:
            raise BlkfleetError(f"{record_json}: says nothing of {name} (a summary of other files?)")
        if item["ios"] != entry["ios"]:
            raise BlkfleetError(
                f"{record_json}: {name} holds {entry['ios']} IOs, the record summary says {item['ios']}"
            )
        for op, tally in entry["ops"].items():
            said = item["ops"].get(op, {"ios": 0, "bytes": 0})
            if entry["format"] == "native" and (said["ios"], said["bytes"]) != (tally["ios"], tally["bytes"]):
                raise BlkfleetError(
                    f"{record_json}: {name} holds {tally['ios']} {op} IOs / {tally['bytes']} bytes, the record "
                    f"summary says {said['ios']} / {said['bytes']}"
                )
        if isinstance(item.get("source"), str):
            sources.append(os.path.basename(item["source"]))
    bad = next((s for s in sources if name_problem(s)), None)
    if bad is not None:
        raise BlkfleetError(f"{record_json}: source file name {bad!r}: {name_problem(bad)}")
    section["summary"] = True
    section["sources"] = sorted(set(sources))
    options = doc.get("options")
    section["options"] = options if isinstance(options, dict) else None
    if doc.get("capture") is not None:
        section["capture"] = doc["capture"]
    return section


def build(replay_dir, devices=(), find=False, base="replay", trace_dir=None, source_host=None, record_json=None,
          engine=None):
    """The manifest (bundle id included) and the replay files to pack as [(member name, path)].

    ``engine`` is the manifest's engine object (path, size, sha256, version, requires_python).
    """
    if name_problem(base):
        raise BlkfleetError(f"invalid input base {base!r}: {name_problem(base)}")
    names = list(dict.fromkeys(devices))
    if find:
        names += [d for d in find_devices(replay_dir, base) if d not in names]
    if not names:
        raise BlkfleetError("no device given (name devices, or use -F to find replay files)")
    for dev in names:
        if name_problem(dev):
            raise BlkfleetError(f"invalid device name {dev!r}: {name_problem(dev)}")
    files, members, formats, max_pkts = [], [], set(), set()
    per_device = {}
    for dev in names:
        paths = find_per_cpu(replay_dir, dev, base)
        per_device[dev] = []
        for cpu, path in enumerate(paths):
            entry, pkts = describe_file(path, dev, cpu)
            files.append(entry)
            per_device[dev].append(entry)
            members.append((entry["path"], path))
            formats.add(entry["format"])
            if entry["format"] == "native":
                max_pkts.add(pkts)
    if "btrecord" in formats:
        max_pkts.add(None)  # btrecord files do not record it
    info, found_host = trace_info(trace_dir, names) if trace_dir else ({}, None)
    host = source_host if source_host is not None else found_host
    if host is not None and host_problem(host):
        raise BlkfleetError(f"invalid --source-host {host!r}: {host_problem(host)}")

    device_list = []
    for dev in names:
        entries = per_device[dev]
        devs = {e["dev"] for e in entries if e["dev"]}
        if len(devs) > 1:
            raise BlkfleetError(f"{dev}: its replay files name different devices ({', '.join(sorted(devs))})")
        known = info.get(dev, {})
        from_files = devs.pop() if devs else None
        if from_files and known.get("dev") and known["dev"] != from_files:
            raise BlkfleetError(f"{dev}: replay files say dev {from_files}, the trace directory says {known['dev']}")
        dev_t = from_files or known.get("dev")
        ops = empty_ops()
        for e in entries:
            add_ops(ops, e["ops"])
        device_list.append({
            "name": dev, "dev": dev_t, "size": known.get("size"),
            "logical_block_size": known.get("logical_block_size"), "cpus": len(entries),
            "ios": sum(e["ios"] for e in entries), "bytes": sum(e["bytes"] for e in entries), "ops": ops,
        })

    firsts = [e["first_ns"] for e in files if e["first_ns"] is not None]
    lasts = [e["last_ns"] for e in files if e["last_ns"] is not None]
    first, last = (min(firsts), max(lasts)) if firsts else (None, None)
    totals_ops = empty_ops()
    for e in files:
        add_ops(totals_ops, e["ops"])
    record = record_section(record_json, files, formats, max_pkts)
    manifest = {
        "format": FORMAT,
        "format_version": 1,
        "created_by": {"name": "blkfleet", "version": __version__},
        "source_host": host,
        "devices": device_list,
        "capture_window": {"first_ns": first, "last_ns": last, "span_ns": (last - first) if firsts else 0},
        "record": record,
        "replay": {"directory": REPLAY_DIR, "base": base, "devices": names},
        "engine": engine,
        "files": files,
        "totals": {
            "files": len(files), "size": sum(e["size"] for e in files), "ios": sum(e["ios"] for e in files),
            "bytes": sum(e["bytes"] for e in files), "ops": totals_ops,
        },
    }
    found = read_origin(replay_dir)
    if found is not None:
        manifest["origin"] = found
    manifest["format_version"] = version_of(manifest)
    manifest["bundle_id"] = bundle_id(manifest)
    check(manifest, "new manifest")
    return manifest, members
