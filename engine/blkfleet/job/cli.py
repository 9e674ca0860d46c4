"""``blkfleet job status|renew|stop|start ID``: one JSON document on stdout, exit 0; bad input exits 2 (one line)."""

from .. import codes
from ..cliargs import nonnegative_float
from ..jsonout import show, write_json
from ..protocol import json_option
from ..replay import job

ACTIONS = (
    ("status", "the run's state"),
    ("renew", "touch the run's lease, then its state with \"renewed\": true/false"),
    ("stop", "SIGTERM the run's engine (only if it provably is that engine) and wait until it is gone; its state "
     "with \"stopped\": true/false"),
    ("start", "give an armed run (replay --arm) its start instant: it starts its workers then (at once if that is "
     "past); also renews its lease; its state with \"start_accepted\": true/false"),
)


def add_parser(sub):
    p = sub.add_parser(
        "job", help="status, lease renewal, start and stop of a replay started with --run-id",
        description="Job control of 'blkfleet replay ... --run-id ID': each action prints one JSON document "
        "(run_id, state none|arming|armed|running|finished|dead, pid, exit_code, results, stop_reason, lease_s, "
        "lease_age_s, started, armed_at, start_at) and exits 0.",
        epilog=codes.epilog(codes.SUCCESS, codes.BAD_INPUT),
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    for name, text in ACTIONS:
        a = actions.add_parser(name, help=text, description=text)
        a.add_argument("run_id", metavar="ID", help="the --run-id of the replay")
        if name == "stop":
            a.add_argument("--timeout", type=nonnegative_float, default=job.STOP_TIMEOUT_S, metavar="SEC",
                           help=f"wait at most SEC seconds for the engine to end (default {job.STOP_TIMEOUT_S:g})")
        if name == "start":
            a.add_argument("--at", type=lambda text: job.parse_instant(text, "--at"), required=True, metavar="TIME",
                           help="the start instant: seconds since the epoch or ISO 8601 (the same for every host "
                           "of a fleet: their clocks should be synchronized)")
        json_option(a, "the document")
        a.set_defaults(func=run)


def run(args):
    job.check_run_id(args.run_id)
    if args.action == "status":
        doc = job.status(args.run_id)
    elif args.action == "renew":
        doc = job.renew(args.run_id)
    elif args.action == "start":
        doc = job.start(args.run_id, args.at)
    else:
        doc = job.stop(args.run_id, args.timeout)
    write_json(args.json, doc)
    if "-" not in args.json:
        show(doc, indent=None)
    return 0
