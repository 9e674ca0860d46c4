"""Per-CPU file sets named ``DEV.KIND.CPU`` (``sda.blktrace.0``, ``sda.replay.3``): discovery and naming."""

import os
import re

from .errors import BlkfleetError
from .names import name_problem


def per_cpu_path(directory, device, kind, cpu):
    """The file name blktrace/btrecord use: ``DIR/DEV.KIND.CPU``."""
    return os.path.join(directory, f"{device}.{kind}.{cpu}")


def find_per_cpu(directory, device, kind):
    """Paths of ``DEV.KIND.0 .. N`` in CPU order.

    Like btrecord, the scan stops at the first missing number; unlike btrecord, a file beyond that hole is an
    error rather than silently ignored (its IOs would be lost).
    """
    pattern = re.compile(re.escape(f"{device}.{kind}.") + r"(\d+)\Z")
    try:
        names = os.listdir(directory)
    except OSError as e:
        raise BlkfleetError(f"{directory}: cannot read directory: {e.strerror}") from None
    numbers = [m.group(1) for m in map(pattern.match, names) if m]
    odd = next((n for n in numbers if n != str(int(n))), None)
    if odd is not None:  # blktrace writes 1, never 01 or other digits: a copy gone wrong
        raise BlkfleetError(f"{per_cpu_path(directory, device, kind, odd)}: not a CPU number as {device}.{kind}.N "
                            f"files are named (write it as {int(odd)})")
    cpus = sorted(map(int, numbers))
    if not cpus:
        raise BlkfleetError(f"{directory}: no {device}.{kind}.N files found for device {device}")
    for expected, cpu in enumerate(cpus):
        if cpu != expected:
            missing = per_cpu_path(directory, device, kind, expected)
            raise BlkfleetError(
                f"{missing}: missing, but {device}.{kind}.{cpu} exists (a hole in the CPU numbers; "
                "btrecord would silently drop every file after it)"
            )
    paths = [per_cpu_path(directory, device, kind, cpu) for cpu in cpus]
    _check_distinct(paths)
    return paths


def _check_distinct(paths):
    """Refuse two names of one non-empty file (a link): its IOs would be read twice, as two CPUs' IOs."""
    seen = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue  # reading it says what is wrong
        if st.st_size and seen.setdefault((st.st_dev, st.st_ino), path) != path:
            raise BlkfleetError(f"{path}: the same file as {seen[(st.st_dev, st.st_ino)]} (a link): its IOs would "
                                "be read twice")


def find_devices(directory, kind):
    """Device names having ``DEV.KIND.N`` files in a directory, in sorted order (``-F``); other files are left
    alone (``notes.replay.txt``), but a name that could not be a device's (names.name_problem: a leading '-', a
    control character...) is refused, naming its file."""
    pattern = re.compile(r"([^.]*)" + re.escape(f".{kind}.") + r"\d+\Z")
    try:
        names = os.listdir(directory)
    except OSError as e:
        raise BlkfleetError(f"{directory}: cannot read directory: {e.strerror}") from None
    found = {}
    for n in names:
        m = pattern.match(n)
        if m:
            found.setdefault(m.group(1), n)
    for device, example in found.items():
        problem = name_problem(device)
        if problem:
            raise BlkfleetError(f"{os.path.join(directory, example)!r}: invalid device name {device!r}: {problem}")
    return sorted(found)
