"""Does a replay target hold data worth keeping? ``blkid -p`` (util-linux) when it is installed, else an
internal table of on-disk signatures read with O_DIRECT, only the blocks the signatures lie in. The same table
names what ``blkfleet device info`` reports a device holds (blkid's TYPE and USAGE for each signature).

Either way the probe happens before the replay starts, and the results JSON tells what it read: the internal
probe lists its reads (offset, bytes); blkid's own reads are not known (it reads through the page cache), so
only its time window is. ``compare --replay-results`` leaves out whatever a capture of the target saw before
the replay's start instant.
"""

import mmap
import os
import shutil
import struct
import subprocess
import time

from ..errors import BlkfleetError

METHODS = ("auto", "blkid", "internal")
BLKID_DIRS = "/usr/sbin:/sbin:/usr/bin:/bin"  # blkid is run as root: only from the system's directories
BLKID_TIMEOUT_S = 30.0
BLKID_NOTHING, BLKID_AMBIVALENT = 2, 8  # blkid -p exit codes: no signature; several (ambivalent) signatures

MD_MAGIC = struct.pack("<I", 0xA92B4EFC)
BCACHE_MAGIC = bytes.fromhex("c68573f64e1a45ca8265f57f48ba6d81")
FAT = "a FAT filesystem"
SWAP = "swap space"
LVM = "an LVM physical volume"
LUKS2_SECONDARY = "a LUKS2 volume (secondary header)"
MD = "an md RAID member"
FS, RAID, CRYPTO, OTHER, TABLE = "filesystem", "raid", "crypto", "other", "partition_table"  # blkid's USAGE
EXT_FEATURES = 1116  # s_feature_compat (then incompat) of an ext superblock: tells ext4 from ext3 from ext2
EXT3_JOURNAL, EXT4_INCOMPAT = 0x4, 0x40 | 0x80 | 0x200  # has_journal; extents, 64bit, flex_bg


def _md_090(size):
    """md 0.90 superblock: the last 64 KiB-aligned 64 KiB of the device."""
    return (size & ~0xFFFF) - 0x10000


def _md_10(size):
    """md 1.0 superblock: 8 KiB from the end, 4 KiB aligned."""
    return ((size // 512 - 16) & ~7) * 512


# (byte offset, or a function of the device size giving it; magic; what it means; blkid's TYPE and USAGE, or the
# partition table type with USAGE "partition_table"). The offsets are those of the
# formats' own definitions: e.g. ext2/3/4's s_magic at 56 in the superblock at 1024, btrfs's at 64 in the one at
# 64 KiB, bcache's 16-byte magic at 24 in the superblock at 4 KiB, ISO 9660's "CD001" at 1 in the volume
# descriptor of 2 KiB sector 16, swap's at the end of the first page (page sizes 4 to 64 KiB), LUKS2's
# secondary header at one of its fixed offsets (16 KiB to 4 MiB), md's 1.1 at 0, 1.2 at 4 KiB, 1.0 and 0.90
# near the end.
SIGNATURES = (
    (1080, b"\x53\xef", "an ext2/3/4 filesystem", ("ext4", FS)),
    (0, b"XFSB", "an XFS filesystem", ("xfs", FS)),
    (65600, b"_BHRfS_M", "a btrfs filesystem", ("btrfs", FS)),
    (1024, b"\x10\x20\xf5\xf2", "an F2FS filesystem", ("f2fs", FS)),
    (3, b"NTFS    ", "an NTFS filesystem", ("ntfs", FS)),
    (3, b"EXFAT   ", "an exFAT filesystem", ("exfat", FS)),
    (54, b"FAT12   ", FAT, ("vfat", FS)),
    (54, b"FAT16   ", FAT, ("vfat", FS)),
    (54, b"FAT     ", FAT, ("vfat", FS)),
    (82, b"FAT32   ", "a FAT32 filesystem", ("vfat", FS)),
    (0, b"hsqs", "a squashfs filesystem", ("squashfs", FS)),
    (0, b"sqsh", "a squashfs filesystem", ("squashfs", FS)),
    (32769, b"CD001", "an ISO 9660 filesystem", ("iso9660", FS)),
    (0, b"bluestore block device", "a Ceph BlueStore device", ("ceph_bluestore", OTHER)),
    (4120, BCACHE_MAGIC, "a bcache device", ("bcache", OTHER)),
    (0, b"LUKS\xba\xbe", "a LUKS volume", ("crypto_LUKS", CRYPTO)),
    *((k << 14, b"SKUL\xba\xbe", LUKS2_SECONDARY, ("crypto_LUKS", CRYPTO)) for k in (1, 2, 4, 8, 16, 32, 64, 128, 256)),
    (4096, MD_MAGIC, MD + " (superblock 1.2)", ("linux_raid_member", RAID)),
    (0, MD_MAGIC, MD + " (superblock 1.1)", ("linux_raid_member", RAID)),
    (_md_10, MD_MAGIC, MD + " (superblock 1.0)", ("linux_raid_member", RAID)),
    (_md_090, MD_MAGIC, MD + " (superblock 0.90)", ("linux_raid_member", RAID)),
    *(((page << 10) - 10, magic, SWAP, ("swap", OTHER)) for page in (4, 8, 16, 32, 64)
      for magic in (b"SWAPSPACE2", b"SWAP-SPACE")),
    *((512 * sector + 24, b"LVM2 001", LVM, ("LVM2_member", RAID)) for sector in range(4)),
    (512, b"EFI PART", "a GPT partition table", ("gpt", TABLE)),
    (4096, b"EFI PART", "a GPT partition table", ("gpt", TABLE)),
    (510, b"\x55\xaa", "an MBR partition table or boot sector", ("dos", TABLE)),
)


def _placed(size):
    """(offset, magic, what, kind) of every signature that fits a device of ``size`` bytes."""
    out = []
    for where, magic, what, kind in SIGNATURES:
        offset = where(size) if callable(where) else where
        if offset >= 0 and offset + len(magic) <= size:
            out.append((offset, magic, what, kind))
    return out


def extents(size, block):
    """The reads the internal probe makes: [(offset, bytes)], block-aligned, merged, in order."""
    spans = sorted((o // block * block, -(-(o + len(m)) // block) * block) for o, m, _w, _k in _placed(size))
    merged = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b - a) for a, b in merged]


def probe_internal(fd, size, block):
    """(what the device holds or None, [(offset, bytes)] read): O_DIRECT reads of the signatures' blocks only.
    ``fd`` must be open with O_DIRECT (the buffer is page-aligned; extents are ``block``-aligned)."""
    found, reads = identify(fd, size, block)
    return (found[0] if found else None), reads


def identify(fd, size, block):
    """((what, blkid TYPE, USAGE) of the first signature found, or None; [(offset, bytes)] read), as
    :func:`probe_internal` reads. An ext2/3/4 filesystem is told apart by its feature flags, as blkid does."""
    reads = extents(size, block)
    data = {}
    buf = mmap.mmap(-1, max([n for _o, n in reads] + [mmap.PAGESIZE]))
    try:
        view = memoryview(buf)
        try:
            for offset, n in reads:
                got = os.preadv(fd, [view[:n]], offset)
                data[offset] = bytes(view[:got])
        finally:
            view.release()
    finally:
        buf.close()
    for offset, magic, what, (kind, usage) in _placed(size):
        start = max(a for a in data if a <= offset)
        if data[start][offset - start:offset - start + len(magic)] == magic:
            if kind == "ext4":
                kind = _ext_version(data[start][EXT_FEATURES - start:EXT_FEATURES - start + 8])
            return (what, kind, usage), reads
    return None, reads


def _ext_version(features):
    """ext4, ext3 or ext2 from an ext superblock's compat and incompat feature words."""
    if len(features) < 8:
        return "ext4"
    compat, incompat = struct.unpack("<II", features)
    return "ext4" if incompat & EXT4_INCOMPAT else "ext3" if compat & EXT3_JOURNAL else "ext2"


def blkid_path():
    return shutil.which("blkid", path=BLKID_DIRS)


def probe_blkid(fd, blkid):
    """What ``blkid -p`` finds on the device open as ``fd``, or None; BlkfleetError if blkid itself fails."""
    tags, ambivalent = blkid_tags(fd, blkid)
    if ambivalent:
        return "several signatures (blkid -p: ambivalent result)"
    if tags is None:
        return None
    found = [f"{k}={tags[k]}" for k in ("TYPE", "PTTYPE", "USAGE") if k in tags]
    return " ".join(found) + " (blkid -p)" if found else "a signature (blkid -p)"


def blkid_tags(fd, blkid):
    """The tags ``blkid -p`` finds on the device open as ``fd`` (it reads it through /dev/fd, never by a path that
    could name another device) and whether they are ambivalent (several signatures): (dict or None when it finds
    none, bool); BlkfleetError if blkid itself fails."""
    try:
        run = subprocess.run([blkid, "-p", "-o", "export", "--", f"/dev/fd/{fd}"], pass_fds=(fd,),
                             stdin=subprocess.DEVNULL, capture_output=True, timeout=BLKID_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BlkfleetError(f"blkid -p failed: {e}") from None
    if run.returncode in (BLKID_NOTHING, BLKID_AMBIVALENT):
        return None, run.returncode == BLKID_AMBIVALENT
    if run.returncode != 0:
        text = run.stderr.decode("utf-8", "replace").strip().splitlines()
        raise BlkfleetError(f"blkid -p failed (exit {run.returncode}): {text[-1] if text else 'no message'}")
    return dict(line.split("=", 1) for line in run.stdout.decode("utf-8", "replace").splitlines() if "=" in line), False


def probe(fd, size, block, method="auto"):
    """Probe a target; a results-ready dict: ``method`` (blkid or internal), ``found`` (what it holds, or
    None), ``ios`` ([{offset, bytes}] read, or None when blkid read it), ``begin_monotonic_ns`` and
    ``end_monotonic_ns`` (CLOCK_MONOTONIC around the probe)."""
    if method not in METHODS:
        raise BlkfleetError(f"invalid signature probe {method!r} ({', '.join(METHODS)})")
    blkid = blkid_path() if method != "internal" else None
    if method == "blkid" and not blkid:
        raise BlkfleetError(f"--probe blkid: blkid (util-linux) is not installed in {BLKID_DIRS}")
    begin = time.monotonic_ns()
    if blkid:
        found, reads, used = probe_blkid(fd, blkid), None, "blkid"
    else:
        (found, reads), used = probe_internal(fd, size, block), "internal"
    return {"method": used, "found": found,
            "ios": None if reads is None else [{"offset": o, "bytes": n} for o, n in reads],
            "begin_monotonic_ns": begin, "end_monotonic_ns": time.monotonic_ns()}
