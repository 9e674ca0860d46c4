"""Processes blkfleet started: told apart from a reused pid by their start time; children that end with their
parent."""

import os


def process_start(pid):
    """The start time (clock ticks since boot) of a live process, or None if there is none (or a zombie)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 1 << 22:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


PR_SET_PDEATHSIG = 1


def end_with_parent(parent, sig):
    """Ask the kernel for ``sig`` when the parent thread dies (PR_SET_PDEATHSIG), in a child forked by ``parent``;
    False if that failed or the parent was already gone (the signal only comes for a death after the call)."""
    import ctypes  # only in the children that ask: 1 ms

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) == 0 and os.getppid() == parent
