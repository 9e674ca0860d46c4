"""Signature probes of write targets on real images: made by the real tools where they are installed (tests/run
installs them), by hand only where no tool can make one here (md: mdadm needs the kernel's md driver; Ceph
BlueStore: no Debian package short of Ceph itself). Both probes, blkid -p and the internal table, must find
each one; the internal probe reads only the blocks it lists, with O_DIRECT."""

import json
import os
import shutil
import struct
import subprocess
import uuid
from collections import Counter

import pytest

from blkfleet.cli import main
from blkfleet.percpu import find_per_cpu
from blkfleet.replay import signatures
from blkfleet.trace.queued import queued_batches
from helpers.replay import map_file, record, replay, validate
from helpers.tracing import traced

pytestmark = pytest.mark.root
MIB = 1 << 20


def tool(name):
    path = shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not path:
        pytest.skip(f"{name} is not installed (tests/run installs it)")
    return path


def run(*args, **kw):
    subprocess.run([str(a) for a in args], check=True, capture_output=True, stdin=subprocess.DEVNULL, **kw)


def luks(dev, kind):
    key = f"/dev/shm/blkfleet-test-{uuid.uuid4().hex}.key"
    with open(key, "wb") as f:
        f.write(b"not a secret")
    try:
        run(tool("cryptsetup"), "luksFormat", "--batch-mode", "--type", kind, "--pbkdf", "pbkdf2",
            "--pbkdf-force-iterations", "1000", "--key-file", key, dev)
    finally:
        os.unlink(key)


def luks2_secondary_only(dev):
    luks(dev, "luks2")
    with open(dev, "r+b") as f:
        f.write(b"\0" * 4096)  # the primary header's first block gone: only the secondary one at 16 KiB is left


def image_into(dev, build, tmp_path):
    """Build an image file with ``build(path)`` and copy it onto the device."""
    img = tmp_path / "fs.img"
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "file").write_bytes(b"blkfleet" * 1000)
    build(img, src)
    with open(img, "rb") as f, open(dev, "r+b") as out:
        shutil.copyfileobj(f, out)


def md_12(dev):
    """An md superblock 1.2 (at 4 KiB, with its checksum) as mdadm writes it: mdadm cannot create one where the
    kernel has no md driver."""
    sb = bytearray(256 + 2 * 2)
    struct.pack_into("<IIII", sb, 0, 0xA92B4EFC, 1, 0, 0)
    sb[16:32] = uuid.uuid4().bytes
    sb[32:42] = b"blkfleet:0"
    struct.pack_into("<QIIQII", sb, 64, 1700000000, 1, 0, 16 << 10, 512, 2)  # ctime, raid1, size, chunk, disks
    struct.pack_into("<QQQQI", sb, 128, 2048, 16 << 10, 8, 0, 0)  # data offset/size, super_offset (sectors)
    sb[168:184] = uuid.uuid4().bytes
    struct.pack_into("<QQQ", sb, 192, 1700000000, 1, (1 << 64) - 1)
    struct.pack_into("<I", sb, 220, 2)  # max_dev
    struct.pack_into("<HH", sb, 256, 0, 1)
    total = sum(struct.unpack_from(f"<{len(sb) // 4}I", sb))  # sb_csum still 0
    struct.pack_into("<I", sb, 216, (total & 0xFFFFFFFF) + (total >> 32) & 0xFFFFFFFF)
    with open(dev, "r+b") as f:
        f.seek(4096)
        f.write(bytes(sb))


def bluestore(dev):
    with open(dev, "r+b") as f:
        f.write(b"bluestore block device\n" + str(uuid.uuid4()).encode() + b"\n")


def partitions(dev, label):
    run_input = "label: gpt\n,10M\n" if label == "gpt" else "label: dos\n,10M\n"
    subprocess.run([tool("sfdisk"), "-q", dev], input=run_input, text=True, check=True, capture_output=True)


KINDS = {
    # name: (device size, make(dev, tmp_path), what the internal table says, what blkid's TYPE/PTTYPE is)
    "ext4": (64, lambda d, t: run(tool("mkfs.ext4"), "-q", "-F", d), "an ext2/3/4 filesystem", "TYPE=ext4"),
    "xfs": (320, lambda d, t: run(tool("mkfs.xfs"), "-q", "-f", d), "an XFS filesystem", "TYPE=xfs"),
    "btrfs": (128, lambda d, t: run(tool("mkfs.btrfs"), "-q", "-f", d), "a btrfs filesystem", "TYPE=btrfs"),
    "f2fs": (64, lambda d, t: run(tool("mkfs.f2fs"), "-q", "-f", d), "an F2FS filesystem", "TYPE=f2fs"),
    "vfat": (64, lambda d, t: run(tool("mkfs.vfat"), d), "a FAT filesystem", "TYPE=vfat"),
    "fat32": (64, lambda d, t: run(tool("mkfs.vfat"), "-F", "32", d), "a FAT32 filesystem", "TYPE=vfat"),
    "ntfs": (64, lambda d, t: run(tool("mkntfs"), "-q", "-Q", "-F", d), "an NTFS filesystem", "TYPE=ntfs"),
    "swap": (64, lambda d, t: run(tool("mkswap"), d), "swap space", "TYPE=swap"),
    "luks1": (64, lambda d, t: luks(d, "luks1"), "a LUKS volume", "TYPE=crypto_LUKS"),
    "luks2": (64, lambda d, t: luks(d, "luks2"), "a LUKS volume", "TYPE=crypto_LUKS"),
    "luks2-secondary": (64, lambda d, t: luks2_secondary_only(d), signatures.LUKS2_SECONDARY,
                        "TYPE=crypto_LUKS"),
    "lvm": (64, lambda d, t: run(tool("pvcreate"), "-q", "-ff", "-y", d), "an LVM physical volume",
            "TYPE=LVM2_member"),
    "squashfs": (64, lambda d, t: image_into(d, lambda img, src: run(tool("mksquashfs"), src, img, "-quiet",
                                                                      "-noappend"), t),
                 "a squashfs filesystem", "TYPE=squashfs"),
    "iso9660": (64, lambda d, t: image_into(d, lambda img, src: run(tool("xorriso"), "-as", "mkisofs", "-quiet",
                                                                     "-o", img, src), t),
                "an ISO 9660 filesystem", "TYPE=iso9660"),
    "bcache": (64, lambda d, t: run(tool("make-bcache"), "-B", d), "a bcache device", "TYPE=bcache"),
    "md-1.2": (64, lambda d, t: md_12(d), signatures.MD + " (superblock 1.2)", "TYPE=linux_raid_member"),
    "bluestore": (64, lambda d, t: bluestore(d), "a Ceph BlueStore device", "TYPE=ceph_bluestore"),
    "gpt": (64, lambda d, t: partitions(d, "gpt"), "a GPT partition table", "PTTYPE=gpt"),
    "mbr": (64, lambda d, t: partitions(d, "dos"), "an MBR partition table or boot sector", "PTTYPE=dos"),
}


def queued_before(outdir, device, until_ns):
    """Counter of (sector, bytes) of the Q events traced for ``device`` before ``until_ns``."""
    seen = Counter()
    for path in find_per_cpu(str(outdir), os.path.basename(device), "blktrace"):
        for batch in queued_batches(path):
            seen.update((s, n) for t, s, n in zip(batch.times, batch.sectors, batch.nbytes) if t < until_ns)
    return seen


def probe_both(dev):
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        internal = signatures.probe_internal(fd, size, 512)
        blkid = signatures.probe_blkid(fd, signatures.blkid_path())
    finally:
        os.close(fd)
    return internal, blkid


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_both_probes_find_real_images(kind, loopdev, tmp_path):
    size, make, internal_says, blkid_says = KINDS[kind]
    dev = loopdev(size * MIB)
    make(dev, tmp_path)
    (found, reads), blkid = probe_both(dev)
    assert found == internal_says
    assert blkid is not None and blkid_says in blkid
    assert reads == signatures.extents(size * MIB, 512)


def test_nothing_on_a_blank_device(loopdev):
    (found, reads), blkid = probe_both(loopdev(64 * MIB))
    assert found is None and blkid is None
    assert sum(n for _o, n in reads) <= 32 << 10  # a few blocks, not a 256 KiB read-ahead


def test_old_luks_entry_is_gone():
    """The old table took 0xfc4d2ba9 at 4 KiB for LUKS: it is nothing of the kind (md's magic is 0xa92b4efc)."""
    assert not any(m == b"\xa9\x2b\x4d\xfc" for _o, m, _w, _k in signatures.SIGNATURES)


def test_internal_probe_reads_only_what_it_lists_before_the_start(tmp_path, loopdev, tracer):
    """A -W replay with the internal probe: the capture of the target sees exactly the listed probe reads
    before the start instant, and ``compare --replay-results`` leaves them out."""
    src = record(tmp_path, "randmix")
    target = loopdev(128 * MIB)
    res = tmp_path / "res.json"
    with traced([target], tmp_path / "orig", tracer):
        code, _doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "--json", tmp_path / "orig.json",
                                 "loop1")
    assert code == 0, err
    with traced([target], tmp_path / "seen", tracer) as seen:
        code, doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "-W", "--probe", "internal",
                                "--json", res, "loop1")
    assert code == 0, err
    validate(doc)
    (probe,) = doc["probes"]
    assert probe["method"] == "internal" and probe["found"] is None and probe["device"] == "loop1"
    listed = {(io["offset"] // 512, io["bytes"]) for io in probe["ios"]}
    start = doc["start"]["monotonic_ns"]
    assert probe["end_monotonic_ns"] < start
    before = queued_before(tmp_path / "seen", target, start)
    assert set(before) == listed and all(n == 1 for n in before.values())
    assert seen.queued(target) == doc["total"]["ios"] + len(listed)
    out = tmp_path / "fidelity.json"
    assert main(["compare", str(tmp_path / "orig"), str(tmp_path / "seen"), "--replay-results", str(res),
                 "--reads-for-writes", "--json", str(out)]) == 0
    with_start = json.loads(out.read_text())
    assert with_start["replay"]["left_out_before_start"] == len(listed)
    assert with_start["replay"]["ios"] == doc["total"]["ios"]
    assert main(["compare", str(tmp_path / "orig"), str(tmp_path / "seen"), "--reads-for-writes",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["replay"]["ios"] == doc["total"]["ios"] + len(listed)


def test_blkid_probe_is_stated_and_left_out_by_compare(tmp_path, loopdev, tracer):
    src = record(tmp_path, "randmix")
    target = loopdev(128 * MIB)
    res = tmp_path / "res.json"
    with traced([target], tmp_path / "seen", tracer):
        code, doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "-W", "--json", res, "loop1")
    assert code == 0, err
    validate(doc)
    (probe,) = doc["probes"]
    assert probe["method"] == "blkid" and probe["ios"] is None
    assert probe["begin_monotonic_ns"] < probe["end_monotonic_ns"] < doc["start"]["monotonic_ns"]
    before = queued_before(tmp_path / "seen", target, doc["start"]["monotonic_ns"])
    out = tmp_path / "fidelity.json"
    assert main(["compare", str(tmp_path / "seen"), str(tmp_path / "seen"), "--replay-results", str(res),
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["replay"]["left_out_before_start"] == sum(before.values())


def test_refusal_names_what_blkid_found_and_a_forced_write_goes_ahead(tmp_path, loopdev):
    src = record(tmp_path, "randmix")
    target = loopdev(128 * MIB)
    luks(target, "luks2")
    for probe, says in (("auto", "TYPE=crypto_LUKS"), ("internal", "a LUKS volume")):
        code, _doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "-W", "--probe", probe, "loop1")
        assert code == 2 and err.count("\n") == 1 and says in err, err
    code, _doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "-W", "--force", "loop1")
    assert code == 0, err
