"""Processes blkfleet started: told apart from a reused pid by their start time."""


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
