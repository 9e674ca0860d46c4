"""``blkfleet device info`` on real loop devices, checked against /sys and against what the devices really hold:
filesystems made with mkfs, a swap area in use, a GPT with partitions, a mount point with a space."""

import os
import shutil
import subprocess
import tempfile

import pytest

from helpers.protocol import run

pytestmark = pytest.mark.root
PROBES = ("internal", "blkid") if shutil.which("blkid") else ("internal",)


def sys_value(name, rel):
    with open(f"/sys/class/block/{name}/{rel}") as f:
        return f.read().strip()


def info(*args):
    doc, proc = run("device", "info", *args)
    assert doc["exit_code"] == 0, (doc, proc.stderr)
    return doc["result"]


def test_a_loop_device_as_sys_describes_it(loopdev):
    dev = loopdev(48 << 20)
    name = os.path.basename(dev)
    subprocess.run(["losetup", "--sector-size", "4096", dev], check=True)
    for probe in PROBES:
        result = info("--probe", probe, dev)
        assert list(result["devices"]) == [name] and result["probe"] == probe
        facts = result["devices"][name]
        assert facts["path"] == dev and facts["type"] == "loop" and facts["dev"] == sys_value(name, "dev")
        assert facts["size_bytes"] == int(sys_value(name, "size")) * 512 == 48 << 20
        assert facts["logical_block_size"] == 4096
        assert facts["loop"]["backing_file"] == sys_value(name, "loop/backing_file")
        assert facts["mounted"] is False and facts["in_use"] is False and facts["swap"] is False
        assert facts["content"] == {"method": probe, "type": None, "usage": None, "uuid": None, "label": None,
                                    "partition_table": None, "error": None}
        assert facts["trace_enable"] is os.path.exists(f"/sys/block/{name}/trace/enable")
    with open("/sys/devices/system/cpu/online") as f:
        online = f.read().strip()
    assert result["cpus"]["online_count"] == len(result["cpus"]["online"]) and online.startswith(
        str(result["cpus"]["online"][0]))
    with open("/proc/sys/fs/aio-max-nr") as f:
        assert result["aio"]["max_nr"] == int(f.read())
    assert result["aio"]["available"] is True and result["aio"]["syscall"] == "supported"
    assert result["kernel"]["release"] == os.uname().release


def test_filesystems_and_a_mount_with_a_space(loopdev):
    dev = loopdev(32 << 20)
    name = os.path.basename(dev)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "h6label", dev], check=True)
    for probe in PROBES:
        content = info("--probe", probe, name)["devices"][name]["content"]
        assert content["type"] == "ext4" and content["usage"] == "filesystem" and content["method"] == probe
        if probe == "blkid":
            assert content["label"] == "h6label" and content["uuid"]
    subprocess.run(["mkfs.ext2", "-q", "-F", dev], check=True)
    assert info("--probe", "internal", name)["devices"][name]["content"]["type"] == "ext2"
    mountpoint = tempfile.mkdtemp(prefix="blkfleet mnt ")
    subprocess.run(["mount", "-o", "ro", dev, mountpoint], check=True)
    try:
        facts = info("--probe", "none", name)["devices"][name]
        assert facts["mounted"] is True and facts["mountpoints"] == [mountpoint] and facts["in_use"] is True
        assert facts["content"]["method"] == "none" and facts["has_filesystem"] is False
    finally:
        subprocess.run(["umount", mountpoint], check=True)
        os.rmdir(mountpoint)


def test_swap_in_use(loopdev):
    dev = loopdev(16 << 20)
    name = os.path.basename(dev)
    subprocess.run(["mkswap", "-q", dev], check=True, capture_output=True)
    subprocess.run(["swapon", dev], check=True)
    try:
        facts = info("--probe", "internal", dev)["devices"][name]
    finally:
        subprocess.run(["swapoff", dev], check=True)
    assert facts["swap"] is True and facts["in_use"] is True and facts["mounted"] is False
    assert facts["content"]["type"] == "swap" and facts["content"]["usage"] == "other"


def test_partitions(loopdev):
    dev = loopdev(64 << 20)
    name = os.path.basename(dev)
    subprocess.run(["sfdisk", "-q", dev], input="label: gpt\n,16M\n,16M\n", text=True, check=True,
                   capture_output=True)
    subprocess.run(["losetup", "-c", dev], check=True)  # rescan: the partitions appear as loopNp1, loopNp2
    subprocess.run(["partx", "-u", dev], capture_output=True)
    parts = [f"{name}p1", f"{name}p2"]
    if not all(os.path.exists(f"/sys/class/block/{p}") for p in parts):
        pytest.skip("the kernel does not scan partitions of this loop device")
    for probe in PROBES:
        facts = info("--probe", probe, name)["devices"][name]
        assert facts["partitions"] == parts and facts["has_partition_table"] is True
        assert facts["content"]["partition_table"] == "gpt" and facts["content"]["type"] is None
    listed = info("--probe", "none", "--include-partitions")["devices"]
    assert set(parts) <= set(listed) and listed[parts[0]]["type"] == "partition"
    assert listed[parts[0]]["parent"] == name and listed[parts[0]]["size_bytes"] == 16 << 20
    assert not set(parts) & set(info("--probe", "none")["devices"])


def test_listing_and_unknown_devices(loopdev):
    name = os.path.basename(loopdev(8 << 20))
    listed = info("--probe", "none")["devices"]
    assert name in listed and all(d["size_bytes"] > 0 for d in listed.values())
    for spec in ("/dev/blkfleet-no-such-device", "/dev/null", "nosuchdev0"):
        doc, proc = run("device", "info", spec)
        assert doc["error"]["code"] == "not_found" and doc["error"]["device"] == spec, doc
        assert proc.stderr == f"blkfleet: no such block device: {spec}\n"


def test_what_device_info_sees_replay_refuses(loopdev, tmp_path):
    """One signature table: what device info says a device holds is what replay -W refuses to overwrite."""
    from blkfleet.cli import main

    dev = loopdev(64 << 20)  # room for every IO of the trace
    subprocess.run(["mkswap", "-q", dev], check=True, capture_output=True)
    content = info("--probe", "internal", dev)["devices"][os.path.basename(dev)]["content"]
    assert content["type"] == "swap"
    replay_dir = tmp_path / "replay"
    replay_dir.mkdir()
    assert main(["record", "-q", "-d", str(os.path.join(os.path.dirname(__file__), "..", "data", "randmix")),
                 "-D", str(replay_dir), "-F"]) == 0
    (tmp_path / "map").write_text(f"loop1 {dev}\n")
    doc, _ = run("replay", "-d", replay_dir, "-M", tmp_path / "map", "-W", "--probe", "internal", "loop1")
    assert doc["error"]["code"] == "target_refused" and "swap space" in doc["error"]["message"]
