"""Does a replay target hold data worth keeping? ``blkid -p`` (util-linux) when it is installed, else an
internal table of on-disk signatures read with O_DIRECT, only the blocks the signatures lie in.

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


def _md_090(size):
    """md 0.90 superblock: the last 64 KiB-aligned 64 KiB of the device."""
    return (size & ~0xFFFF) - 0x10000


def _md_10(size):
    """md 1.0 superblock: 8 KiB from the end, 4 KiB aligned."""
    return ((size // 512 - 16) & ~7) * 512


# (byte offset, or a function of the device size giving it; magic; what it means). The offsets are those of the
# formats' own definitions: e.g. ext2/3/4's s_magic at 56 in the superblock at 1024, btrfs's at 64 in the one at
# 64 KiB, bcache's 16-byte magic at 24 in the superblock at 4 KiB, ISO 9660's "CD001" at 1 in the volume
# descriptor of 2 KiB sector 16, swap's at the end of the first page (page sizes 4 to 64 KiB), LUKS2's
# secondary header at one of its fixed offsets (16 KiB to 4 MiB), md's 1.1 at 0, 1.2 at 4 KiB, 1.0 and 0.90
# near the end.
SIGNATURES = (
    (1080, b"\x53\xef", "an ext2/3/4 filesystem"),
    (0, b"XFSB", "an XFS filesystem"),
    (65600, b"_BHRfS_M", "a btrfs filesystem"),
    (1024, b"\x10\x20\xf5\xf2", "an F2FS filesystem"),
    (3, b"NTFS    ", "an NTFS filesystem"),
    (3, b"EXFAT   ", "an exFAT filesystem"),
    (54, b"FAT12   ", FAT),
    (54, b"FAT16   ", FAT),
    (54, b"FAT     ", FAT),
    (82, b"FAT32   ", "a FAT32 filesystem"),
    (0, b"hsqs", "a squashfs filesystem"),
    (0, b"sqsh", "a squashfs filesystem"),
    (32769, b"CD001", "an ISO 9660 filesystem"),
    (0, b"bluestore block device", "a Ceph BlueStore device"),
    (4120, BCACHE_MAGIC, "a bcache device"),
    (0, b"LUKS\xba\xbe", "a LUKS volume"),
    *((k << 14, b"SKUL\xba\xbe", LUKS2_SECONDARY) for k in (1, 2, 4, 8, 16, 32, 64, 128, 256)),
    (4096, MD_MAGIC, MD + " (superblock 1.2)"),
    (0, MD_MAGIC, MD + " (superblock 1.1)"),
    (_md_10, MD_MAGIC, MD + " (superblock 1.0)"),
    (_md_090, MD_MAGIC, MD + " (superblock 0.90)"),
    *(((page << 10) - 10, magic, SWAP) for page in (4, 8, 16, 32, 64) for magic in (b"SWAPSPACE2", b"SWAP-SPACE")),
    *((512 * sector + 24, b"LVM2 001", LVM) for sector in range(4)),
    (512, b"EFI PART", "a GPT partition table"),
    (4096, b"EFI PART", "a GPT partition table"),
    (510, b"\x55\xaa", "an MBR partition table or boot sector"),
)


def _placed(size):
    """(offset, magic, what) of every signature that fits a device of ``size`` bytes."""
    out = []
    for where, magic, what in SIGNATURES:
        offset = where(size) if callable(where) else where
        if offset >= 0 and offset + len(magic) <= size:
            out.append((offset, magic, what))
    return out


def extents(size, block):
    """The reads the internal probe makes: [(offset, bytes)], block-aligned, merged, in order."""
    spans = sorted((o // block * block, -(-(o + len(m)) // block) * block) for o, m, _w in _placed(size))
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
    for offset, magic, what in _placed(size):
        start = max(a for a in data if a <= offset)
        if data[start][offset - start:offset - start + len(magic)] == magic:
            return what, reads
    return None, reads


def blkid_path():
    return shutil.which("blkid", path=BLKID_DIRS)


def probe_blkid(fd, blkid):
    """What ``blkid -p`` finds on the device open as ``fd`` (it reads it through /dev/fd, never by a path that
    could name another device), or None; BlkfleetError if blkid itself fails."""
    try:
        run = subprocess.run([blkid, "-p", "-o", "export", "--", f"/dev/fd/{fd}"], pass_fds=(fd,),
                             stdin=subprocess.DEVNULL, capture_output=True, timeout=BLKID_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BlkfleetError(f"blkid -p failed: {e}") from None
    if run.returncode == BLKID_NOTHING:
        return None
    if run.returncode == BLKID_AMBIVALENT:
        return "several signatures (blkid -p: ambivalent result)"
    if run.returncode != 0:
        text = run.stderr.decode("utf-8", "replace").strip().splitlines()
        raise BlkfleetError(f"blkid -p failed (exit {run.returncode}): {text[-1] if text else 'no message'}")
    tags = dict(line.split("=", 1) for line in run.stdout.decode("utf-8", "replace").splitlines() if "=" in line)
    found = [f"{k}={tags[k]}" for k in ("TYPE", "PTTYPE", "USAGE") if k in tags]
    return " ".join(found) + " (blkid -p)" if found else "a signature (blkid -p)"


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
