"""``blkfleet report``: one self-contained HTML file with the plots of a replay and of the stored runs."""

import os

from .. import codes, protocol
from ..bundle.schema import load_schema, problem
from ..cliargs import directory, positive_float
from ..errors import BlkfleetError
from ..files import absolute, atomic_write, read_json, work_dir
from ..jsonout import write_json
from ..results.store import Store, load_document
from ..results.store_location import db_option, default_db, exists, shown
from .build import from_store, render


def add_parser(sub):
    p = sub.add_parser(
        "report",
        help="write one self-contained HTML report with plots (IOPS over time, latency CDF, lateness, LBA heat "
        "map, trends with the baseline band, fidelity, verdict)",
        description="Write one HTML file that needs no network to view: inline CSS, SVG plots and a small "
        "script for tooltips and zoom. The replay "
        "shown is the last --results file, else the newest stored run; trends cover the stored runs (and the "
        "--results files not stored). With --original and --replay-capture the fidelity figures are included.",
        epilog=codes.epilog(codes.SUCCESS, codes.BAD_INPUT),
    )
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the HTML file to write")
    db_option(p, "; an SQLite file is used when it exists")
    p.add_argument("--results", nargs="+", default=[], metavar="FILE", help="results JSON files")
    p.add_argument("--baseline", metavar="NAME", help="baseline: its band on the trends and its verdict table")
    p.add_argument("--original", type=directory, metavar="CAPTURE_DIR",
                   help="the original capture (DEV.blktrace.N files)")
    p.add_argument("--replay-capture", type=directory, metavar="CAPTURE_DIR", help="a capture of the replay")
    p.add_argument("--original-device", metavar="DEV", help="device of --original (default: its only one)")
    p.add_argument("--replay-device", metavar="DEV", help="device of --replay-capture (default: its only one)")
    p.add_argument("--io-log", metavar="FILE",
                   help="the per-IO log of the replay shown (blkfleet replay --io-log): its submissions over time and "
                   "its latency CDF (first iteration)")
    p.add_argument("--host", help="only this host's stored runs")
    p.add_argument("--device", help="only this device's stored runs")
    p.add_argument("--stats", metavar="FILE", help="a 'blkfleet stats --json' document: its workload section")
    p.add_argument("--band-k", type=positive_float, default=2.0, metavar="K",
                   help="baseline band: mean ± K sd (default 2)")
    protocol.json_option(p, "{output, bytes, runs, verdict}")
    p.set_defaults(func=run)


def run(args):
    if args.replay_capture and not args.original:
        raise BlkfleetError("--replay-capture needs --original (the capture it is compared with)")
    files = [(path, load_document(path)) for path in args.results]
    runs, baseline_rows, verdict, baseline_docs = [], [], None, []
    db = args.db or default_db()
    have_db = exists(db)
    if args.baseline and not have_db:
        raise BlkfleetError(f"--baseline needs a results store: {shown(db)} does not exist")
    if have_db:
        with Store(db, read_only=True) as store:
            runs, baseline_rows, verdict, baseline_docs = from_store(store, args.baseline, args.host, args.device,
                                                                     args.band_k)
    stored = {(r[4].get("host"), r[4].get("started")) for r in runs}
    for path, doc in files:
        if (doc.get("host"), doc.get("started")) not in stored:
            runs += [(os.path.basename(path), None, doc["host"], name, doc) for name in sorted(doc["devices"])]
    if files:
        focus_label, focus = files[-1][0], files[-1][1]
    elif runs:
        focus_label, focus = runs[-1][0], runs[-1][4]
    else:
        focus_label, focus = "", None
    stats = read_json(args.stats, "stats document") if args.stats else None
    trouble = stats is not None and problem(stats, load_schema("stats.schema.json"))
    if trouble:
        raise BlkfleetError(f"{args.stats}: not a blkfleet stats document: {trouble}")
    if focus is None and not args.original and stats is None:
        raise BlkfleetError("nothing to report: no --results, no stored runs, no --original capture and no --stats")
    html = render(focus, focus_label, runs, baseline_rows, args.baseline, verdict, args.original,
                  args.replay_capture, args.original_device, args.replay_device, args.band_k, args.io_log, stats,
                  baseline_docs)
    work_dir(os.path.dirname(absolute(args.output)), "report's directory", sticky_ok=True)
    atomic_write(args.output, html)
    print(f"blkfleet report: {args.output} ({len(html) // 1024} KiB, {len(runs)} runs"
          + (f", verdict {verdict['verdict']}" if verdict else "") + ")")
    write_json(args.json, {"output": os.path.abspath(args.output), "bytes": len(html.encode("utf-8")),
                           "runs": len(runs), "verdict": verdict["verdict"] if verdict else None})
    return 0
