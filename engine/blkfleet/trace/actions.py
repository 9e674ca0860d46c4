"""The blk_io_trace action word: categories (high bits) and action codes (low 16 bits)."""

CATEGORIES = (
    ("read", 1 << 0),
    ("write", 1 << 1),
    ("flush", 1 << 2),
    ("sync", 1 << 3),
    ("queue", 1 << 4),
    ("requeue", 1 << 5),
    ("issue", 1 << 6),
    ("complete", 1 << 7),
    ("fs", 1 << 8),
    ("pc", 1 << 9),
    ("notify", 1 << 10),
    ("ahead", 1 << 11),
    ("meta", 1 << 12),
    ("discard", 1 << 13),
    ("drv_data", 1 << 14),
    ("fua", 1 << 15),
    # protocol version 8 only (action bits 32..38)
    ("zone_append", 1 << 16),
    ("zone_reset", 1 << 17),
    ("zone_reset_all", 1 << 18),
    ("zone_finish", 1 << 19),
    ("zone_open", 1 << 20),
    ("zone_close", 1 << 21),
    ("write_zeroes", 1 << 22),
)
CATEGORY_BITS = dict(CATEGORIES)
CATEGORY_SHIFT = 16

# Category bits as they appear in the action word.
C_READ = 1 << 16
C_WRITE = 1 << 17
C_FLUSH = 1 << 18
C_SYNC = 1 << 19
C_QUEUE = 1 << 20
C_COMPLETE = 1 << 23
C_FS = 1 << 24
C_NOTIFY = 1 << 26
C_AHEAD = 1 << 27
C_META = 1 << 28
C_DISCARD = 1 << 29
C_FUA = 1 << 31
C_WRITE_ZEROES = 1 << 38

CGROUP_FLAG = 0x100
ACTION_MASK = 0xFF

ACTIONS = {
    1: ("queue", "Q"),
    2: ("backmerge", "M"),
    3: ("frontmerge", "F"),
    4: ("getrq", "G"),
    5: ("sleeprq", "S"),
    6: ("requeue", "R"),
    7: ("issue", "D"),
    8: ("complete", "C"),
    9: ("plug", "P"),
    10: ("unplug_io", "U"),
    11: ("unplug_timer", "UT"),
    12: ("insert", "I"),
    13: ("split", "X"),
    14: ("bounce", "B"),
    15: ("remap", "A"),
    16: ("abort", "-"),
    17: ("drv_data", "-"),
    18: ("zone_plug", "-"),
    19: ("zone_unplug", "-"),
}
A_QUEUE = 1
A_COMPLETE = 8

NOTIFIES = {0: "process", 1: "timestamp", 2: "message"}
N_PROCESS, N_TIMESTAMP, N_MESSAGE = 0, 1, 2


def categories(action):
    """Names of the category bits set in an action word, in bit order."""
    bits = action >> CATEGORY_SHIFT
    return tuple(name for name, bit in CATEGORIES if bits & bit)


def action_name(action):
    """Name of the action code ('queue', 'complete', ...) or of the notify kind for notify records."""
    code = action & ACTION_MASK
    if action & C_NOTIFY:
        return NOTIFIES.get(code, f"notify{code}")
    return ACTIONS.get(code, (f"action{code}", "?"))[0]


def is_queue(action):
    """True for a Q event as btrecord selects it: code 1 with the QUEUE category and no cgroup flag."""
    return action & 0xFFFF == A_QUEUE and bool(action & C_QUEUE)


def is_complete(action):
    """True for a C event: code 8, not a notify."""
    return action & 0xFFFF == A_COMPLETE and not action & C_NOTIFY
