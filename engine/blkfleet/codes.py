"""Exit codes and protocol error codes of every ``blkfleet`` command, in one table.

A command exits with one of the exit codes below. With ``--json -`` it also prints one protocol document
(blkfleet.protocol) whose ``error.code`` names the failure more precisely than the exit code can: several error
codes share exit code 2 (the command refused its input or its situation, nothing was done). docs/protocol.md
lists this table; a new code is added here, never renamed or reused, so that a controller may rely on it.
"""

SUCCESS = 0
EVENTS_DROPPED = 1  # capture stop --fail-on-drops: the kernel dropped events, the trace is incomplete
BAD_INPUT = 2  # bad input or a refusal: one line on stderr, nothing done
IO_ERRORS = 3  # the replay ran to its end, some IOs failed
CONTROLLER_GONE = 4  # stopped because its controller went quiet (lease expired, or no start while armed)
WORKER_FAILED = 5  # a replay worker died or failed: the others were stopped, partial results marked failed
REGRESSION = 10  # regress: some metric regressed against the baseline
INSUFFICIENT_SAMPLES = 12  # regress: too few samples for a verdict (and no regression)
INTERNAL_ERROR = 70  # a bug: the traceback is on stderr (EX_SOFTWARE of sysexits.h)
INTERRUPTED = 130  # stopped by SIGINT or SIGTERM (128 + SIGINT, as a shell reports it)

# error code -> (exit code, what it means). The order is the order of docs/protocol.md.
ERRORS = {
    "invalid_input": (BAD_INPUT, "bad arguments or input data (a malformed file names the file and offset)"),
    "not_found": (BAD_INPUT, "a file, device, capture or stored run named by the command does not exist"),
    "os_error": (BAD_INPUT, "the system refused an operation; 'errno' names the error, 'path' the file"),
    "unavailable": (BAD_INPUT, "the host lacks what the command needs: root, a kernel feature or a program"),
    "target_refused": (BAD_INPUT, "a replay target may not be written: mounted, claimed, locked or holding data"),
    "tracer_busy": (BAD_INPUT, "another capture holds the machine's ftrace tracer"),
    "already_running": (BAD_INPUT, "a capture or replay of another run is in progress there"),
    "capture_failed": (BAD_INPUT, "the capture failed while it ran; its summary (the result) says how far it got"),
    "transfer_failed": (BAD_INPUT, "a transfer over the network failed: refused (HTTP status), no answer or cut off"),
    "events_dropped": (EVENTS_DROPPED, "the kernel dropped events: the trace is incomplete"),
    "io_errors": (IO_ERRORS, "the replay ran to its end and some IOs failed"),
    "lease_expired": (CONTROLLER_GONE, "the replay's lease was not renewed in time: stopped, partial results"),
    "not_started": (CONTROLLER_GONE, "an armed replay got no start instant within its arm wait: nothing replayed"),
    "worker_failed": (WORKER_FAILED, "a replay worker died or failed: partial results, marked failed"),
    "regression": (REGRESSION, "some metric regressed against the baseline (the verdict is the result)"),
    "insufficient_samples": (INSUFFICIENT_SAMPLES, "too few samples for a verdict, and no regression"),
    "interrupted": (INTERRUPTED, "stopped by SIGINT or SIGTERM; a replay keeps its partial results"),
    "internal_error": (INTERNAL_ERROR, "a bug in blkfleet; the traceback is on stderr"),
}


def exit_code(error_code):
    """The exit code of a protocol error code (an unknown one is a bug: internal_error's)."""
    return ERRORS.get(error_code, ERRORS["internal_error"])[0]


EXITS = {
    SUCCESS: "success",
    EVENTS_DROPPED: "events dropped",
    BAD_INPUT: "bad input or a refusal",
    IO_ERRORS: "IO errors",
    CONTROLLER_GONE: "lease expired or never started",
    WORKER_FAILED: "a worker failed",
    REGRESSION: "regression",
    INSUFFICIENT_SAMPLES: "too few samples",
    INTERNAL_ERROR: "internal error",
    INTERRUPTED: "interrupted",
}


def epilog(*exits):
    """The exit-code line of a command's help, for the exit codes it uses (besides internal_error's)."""
    return "exit codes: " + ", ".join(f"{c} {EXITS[c]}" for c in exits) + "; with --json -, one protocol " \
        "document on stdout (docs/protocol.md)"
