"""The ``device info`` document: every (or each named) block device with its use and content, and the host."""

import os

from ..errors import BlkfleetError
from . import content, host, mounts, sysfs


def _used(facts):
    return facts["mounted"] or facts["swap"] or bool(facts["holders"])


def _device(name, mount_table, swaps):
    facts = sysfs.facts(name)
    numbers = {facts["dev"]}
    facts["mountpoints"] = sorted({m["mountpoint"] for m in mount_table if m["dev"] in numbers})
    facts["mounted"] = bool(facts["mountpoints"])
    facts["swap"] = facts["dev"] in swaps
    return facts


def _mounted_fstype(facts, mount_table):
    """The filesystem type a mounted device is mounted as, when there is one only."""
    kinds = sorted({m["fstype"] for m in mount_table if m["dev"] == facts["dev"]})
    return kinds[0] if len(kinds) == 1 else None


def info(devices=(), include_empty=False, include_partitions=False, probe="auto"):
    """The document of ``blkfleet device info`` (schemas/device-info.schema.json). ``devices``: names or paths
    (none: every whole device, with its partitions when ``include_partitions``, without the empty ones unless
    ``include_empty``); ``probe``: how each device's content is found (auto, blkid, internal, none)."""
    if not os.path.isdir(sysfs.CLASS):
        raise BlkfleetError(f"{sysfs.CLASS} is missing: device info needs Linux with sysfs mounted",
                            code="unavailable")
    method, blkid = content.method_for(probe)
    if devices:
        names = []
        for spec in devices:
            name = sysfs.resolve(spec)
            if name is None:
                raise BlkfleetError(f"no such block device: {spec}", code="not_found", device=spec)
            if name not in names:
                names.append(name)
    else:
        names = sysfs.whole_devices()
        if include_partitions:
            names = sorted(set(names) | {p for n in names for p in sysfs.partitions_of(n)})
    mount_table, swaps = mounts.mountinfo(), mounts.swap_numbers()
    found = {}
    for name in names:
        facts = _device(name, mount_table, swaps)
        if devices or include_empty or facts["size_bytes"]:
            found[name] = facts
    for facts in found.values():
        parts = [found.get(p) or _device(p, mount_table, swaps) for p in facts["partitions"]]
        facts["in_use"] = _used(facts) or any(_used(p) for p in parts)
        facts["content"] = probed = content.probe(facts, method, blkid)
        fstype = _mounted_fstype(facts, mount_table) if facts["mounted"] and probed["error"] else None
        if fstype:  # a mounted device the probe could not read: its type from the mount table
            probed.update(method="mountinfo", type=fstype, usage="filesystem")
        facts["has_filesystem"] = probed["usage"] == "filesystem"
        facts["has_partition_table"] = probed["partition_table"] is not None or bool(facts["partitions"])
    return {"devices": found, "cpus": host.cpus(), "tracing": host.tracing(mount_table), "aio": host.aio(),
            "io_uring": host.io_uring(), "kernel": host.kernel(), "probe": method}
