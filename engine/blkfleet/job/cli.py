"""``blkfleet job status|renew|stop ID``: one JSON document on stdout, exit 0; bad input exits 2 (one line)."""

import json
import sys

from ..errors import BlkfleetError
from ..replay import job


def _timeout(text):
    try:
        value = float(text)
    except ValueError:
        raise BlkfleetError(f"invalid --timeout {text!r} (seconds, a number >= 0)") from None
    if not 0 <= value < float("inf"):
        raise BlkfleetError(f"invalid --timeout {text!r} (seconds, a number >= 0)")
    return value


def add_parser(sub):
    p = sub.add_parser(
        "job", help="status, lease renewal and stop of a replay started with --run-id",
        description="Job control of 'blkfleet replay ... --run-id ID': each action prints one JSON document "
        "(run_id, state none|running|finished|dead, pid, exit_code, results, stop_reason, lease_s, lease_age_s, "
        "started) and exits 0.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    for name, text in (("status", "the run's state"),
                       ("renew", "touch the run's lease, then its state with \"renewed\": true/false"),
                       ("stop", "SIGTERM the run's engine (only if it provably is that engine) and wait until it is "
                        "gone; its state with \"stopped\": true/false")):
        a = actions.add_parser(name, help=text, description=text)
        a.add_argument("run_id", metavar="ID", help="the --run-id of the replay")
        if name == "stop":
            a.add_argument("--timeout", type=_timeout, default=job.STOP_TIMEOUT_S, metavar="SEC",
                           help=f"wait at most SEC seconds for the engine to end (default {job.STOP_TIMEOUT_S:g})")
        a.set_defaults(func=run)


def run(args):
    job.check_run_id(args.run_id)
    if args.action == "status":
        doc = job.status(args.run_id)
    elif args.action == "renew":
        doc = job.renew(args.run_id)
    else:
        doc = job.stop(args.run_id, args.timeout)
    json.dump(doc, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0
