"""blkfleet.core.blkdev_info through the real ``ansible`` program (the facts from the engine it installed), checked
against /sys for real loop devices."""

import os
import subprocess
import tempfile

import pytest

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def engine():
    """``engine=PATH`` of the engine this checkout installs (blkfleet.core.engine): the module's own default, the
    newest engine installed on the machine, may be an older one that another run left."""
    from helpers.adhoc import run_adhoc

    rc, result, run = run_adhoc("blkfleet.core.engine")
    assert rc == 0, run.stdout + run.stderr
    return f"engine={result['path']}"


def sys_value(dev, rel):
    with open(f"/sys/block/{os.path.basename(dev)}/{rel}") as f:
        return f.read().strip()


def test_fqcn_and_short_name_agree_with_sys(adhoc, loopdev, engine):
    dev = loopdev(48 << 20)
    name = os.path.basename(dev)
    rc, fqcn, run = adhoc("blkfleet.core.blkdev_info", f"devices={dev} {engine}")
    assert rc == 0, run.stdout + run.stderr
    rc, short, run = adhoc("blkdev_info", f"devices={name} {engine}")
    assert rc == 0, run.stdout + run.stderr
    assert fqcn["changed"] is False and short["changed"] is False
    assert list(fqcn["devices"]) == [name] == list(short["devices"])

    for result in (fqcn, short):
        facts = result["devices"][name]
        assert facts["path"] == dev
        assert facts["type"] == "loop"
        assert facts["dev"] == sys_value(dev, "dev")
        assert facts["size_bytes"] == int(sys_value(dev, "size")) * 512 == 48 << 20
        assert facts["logical_block_size"] == int(sys_value(dev, "queue/logical_block_size"))
        assert facts["physical_block_size"] == int(sys_value(dev, "queue/physical_block_size"))
        assert facts["rotational"] is (sys_value(dev, "queue/rotational") == "1")
        scheduler = sys_value(dev, "queue/scheduler")
        assert facts["schedulers"] == scheduler.replace("[", "").replace("]", "").split()
        if "[" in scheduler:
            assert f"[{facts['scheduler']}]" in scheduler
        assert facts["read_only"] is False
        assert facts["loop"]["backing_file"] == sys_value(dev, "loop/backing_file")
        assert facts["mounted"] is False and facts["in_use"] is False
        assert facts["partitions"] == [] and facts["holders"] == []
        assert facts["content"]["type"] is None and facts["has_filesystem"] is False
        assert facts["trace_enable"] is os.path.exists(f"/sys/block/{name}/trace/enable")

    with open("/sys/devices/system/cpu/online") as f:
        online = []
        for part in f.read().strip().split(","):
            lo, _, hi = part.partition("-")
            online += range(int(lo), int(hi or lo) + 1)
    assert fqcn["cpus"]["online"] == online
    assert fqcn["cpus"]["online_count"] == len(online)
    assert set(fqcn["cpus"]["affinity"]) <= set(online)
    tracing = fqcn["tracing"]
    if os.path.exists("/sys/kernel/security/lockdown"):
        with open("/sys/kernel/security/lockdown") as f:
            assert f"[{tracing['lockdown']}]" in f.read()
        if tracing["lockdown"] in ("integrity", "confidentiality"):
            assert tracing["blktrace_relay_allowed"] is False
    with open("/proc/sys/fs/aio-max-nr") as f:
        assert fqcn["aio"]["max_nr"] == int(f.read())
    if os.path.exists("/proc/sys/kernel/io_uring_disabled"):
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            assert fqcn["io_uring"]["disabled_sysctl"] == int(f.read())


def test_filesystem_mount_and_sector_size(adhoc, loopdev, engine):
    dev = loopdev(32 << 20)
    name = os.path.basename(dev)
    subprocess.run(["losetup", "--sector-size", "4096", dev], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True, capture_output=True)
    mountpoint = tempfile.mkdtemp(prefix="blkfleet-mnt-")
    subprocess.run(["mount", "-o", "ro", dev, mountpoint], check=True)
    try:
        for probe in ("blkid", "superblock"):
            rc, result, run = adhoc("blkfleet.core.blkdev_info", f"devices={name} content_probe={probe} {engine}",
                                    check=True)
            assert rc == 0, run.stdout + run.stderr
            facts = result["devices"][name]
            assert facts["logical_block_size"] == 4096
            assert facts["mounted"] is True and facts["mountpoints"] == [mountpoint]
            assert facts["in_use"] is True
            assert facts["content"]["method"] in (probe, "mountinfo")  # mountinfo: the probe could not read it
            assert facts["content"]["type"] == "ext4"
            assert facts["has_filesystem"] is True
    finally:
        subprocess.run(["umount", mountpoint], check=True)
        os.rmdir(mountpoint)


def test_all_devices_lists_attached_loops(adhoc, loopdev, engine):
    dev = loopdev(8 << 20)
    rc, result, run = adhoc("blkdev_info", f"content_probe=none {engine}")
    assert rc == 0, run.stdout + run.stderr
    assert os.path.basename(dev) in result["devices"]
    assert all(d["size_bytes"] > 0 for d in result["devices"].values())


def test_unknown_device_fails(adhoc, engine):
    rc, result, run = adhoc("blkfleet.core.blkdev_info", f"devices=/dev/blkfleet-no-such-device {engine}")
    assert rc == 2
    assert "localhost | FAILED! =>" in run.stdout
    assert result["msg"] == "no such block device: /dev/blkfleet-no-such-device"
    assert result["error"] == {"code": "not_found", "message": result["msg"], "device": "/dev/blkfleet-no-such-device"}
