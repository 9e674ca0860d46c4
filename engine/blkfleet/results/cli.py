"""``blkfleet results``: the results store (add, list, show, export, baselines)."""

import json
import sys

from .. import codes, protocol
from ..cliargs import positive_int
from ..errors import BlkfleetError
from ..files import atomic_write
from ..jsonout import show, write_json
from ..numtext import number
from .store import Store, load_document, parse_tag
from .store_location import db_option


def _db_arg(p):
    db_option(p)


def _filters(p):
    p.add_argument("--host", help="only this host")
    p.add_argument("--device", help="only this device (recorded name or target path)")
    p.add_argument("--tag", action="append", default=[], type=parse_tag, metavar="K=V", help="only runs tagged so")


def add_parser(sub):
    p = sub.add_parser("results", help="the results store: add, list, show, export runs; baselines",
                       description="Keep every replay's results JSON in a store, an SQLite file or a PostgreSQL "
                       "database (one row per run and device, with host, device, target, bundle id, engine version, "
                       "time and tags).",
                       epilog=codes.epilog(codes.SUCCESS, codes.BAD_INPUT))
    rsub = p.add_subparsers(dest="results_command", metavar="ACTION", parser_class=type(p))
    rsub.required = True

    a = rsub.add_parser("add", help="store results JSON files")
    a.add_argument("files", nargs="+", metavar="FILE")
    a.add_argument("--tag", action="append", default=[], type=parse_tag, metavar="K=V", help="tag the runs")
    a.add_argument("--bundle-id", metavar="ID", help="the bundle that was replayed")
    protocol.json_option(a, "{runs: [{run, added, host, devices, file}]}")
    _db_arg(a)
    a.set_defaults(func=run_add)

    c = rsub.add_parser("check", help="check results JSON files against the results schema; store nothing")
    c.add_argument("files", nargs="+", metavar="FILE")
    protocol.json_option(c, "{files: [{file, host, devices}]}")
    c.set_defaults(func=run_check)

    ls = rsub.add_parser("list", help="list stored runs (one line per run and device)")
    _filters(ls)
    protocol.json_option(ls, "the rows", stdout_flag=True)
    _db_arg(ls)
    ls.set_defaults(func=run_list)

    s = rsub.add_parser("show", help="print one stored run's results JSON (with its store metadata)")
    s.add_argument("run_id", type=int, metavar="ID")
    protocol.json_option(s, "the run (also printed on stdout)")
    _db_arg(s)
    s.set_defaults(func=run_show)

    e = rsub.add_parser("export", help="export the store (JSON: full documents; CSV: one row per run and device)")
    e.add_argument("--format", choices=("json", "csv"), default="json")
    e.add_argument("-o", "--output", default="-", metavar="FILE", help="default stdout")
    protocol.json_option(e, "{format, output, runs, rows} (with '-', give -o FILE: the export is not on stdout)")
    _db_arg(e)
    e.set_defaults(func=run_export)

    b = rsub.add_parser("baseline", help="named baselines: sets of stored runs")
    bsub = b.add_subparsers(dest="baseline_command", metavar="ACTION", parser_class=type(p))
    bsub.required = True
    bs = bsub.add_parser("set", help="define or replace a baseline")
    bs.add_argument("name", metavar="NAME")
    protocol.json_option(bs, "{name, members: [{run, host, device}]}")
    which = bs.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", dest="runs", nargs="+", type=int, metavar="ID", help="these runs")
    which.add_argument("--last", type=positive_int, metavar="N", help="the last N runs of each host and device")
    _filters(bs)
    bs.add_argument("--mode", choices=("timed", "no-stall", "load", "dependency"),
                    help="only runs replayed in this mode (a baseline never mixes modes)")
    _db_arg(bs)
    bs.set_defaults(func=run_baseline_set)
    bl = bsub.add_parser("list", help="list baselines")
    protocol.json_option(bl, "the baselines", stdout_flag=True)
    _db_arg(bl)
    bl.set_defaults(func=run_baseline_list)


def run_add(args):
    docs = [(path, load_document(path)) for path in args.files]  # all checked before any is stored
    runs = []
    with Store(args.db) as store:
        for path, doc in docs:
            run_id, new = store.add(doc, tags=args.tag, bundle_id=args.bundle_id, source=path, checked=True)
            devices = ", ".join(sorted(doc["devices"]))
            print(f"{'added' if new else 'already stored'}: run {run_id} ({doc['host']}: {devices}) from {path}")
            runs.append({"run": run_id, "added": bool(new), "host": doc["host"], "devices": sorted(doc["devices"]),
                         "file": path})
    write_json(args.json, {"runs": runs})
    return 0


def run_check(args):
    checked = []
    for path in args.files:
        doc = load_document(path)
        print(f"valid: {path} ({doc['host']}: {', '.join(sorted(doc['devices']))})")
        checked.append({"file": path, "host": doc["host"], "devices": sorted(doc["devices"])})
    write_json(args.json, {"files": checked})
    return 0


def run_list(args):
    with Store(args.db, read_only=True) as store:
        rows = store.listing(host=args.host, device=args.device, tags=args.tag)
    if args.json:
        write_json(args.json, rows)
        return 0
    head = ("run", "started", "host", "device", "target", "it", "iops", "MB/s", "p50 us", "p99 us", "late99",
            "tags")
    table = [head] + [(str(r["run"]), r["started"][:19], r["host"], r["device"], r["target"] or "-",
                       str(r["iterations"]), number(r["iops"]), number(r["mb_s"]), number(r["latency_p50_us"]),
                       number(r["latency_p99_us"]), number(r["lateness_p99_us"]),
                       ",".join(f"{k}={v}" for k, v in sorted(r["tags"].items())) or "-") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def run_show(args):
    with Store(args.db, read_only=True) as store:
        run = store.get(args.run_id)
    doc = {**run.summary(), "document": run.doc}
    write_json(args.json, doc)
    if "-" not in args.json:
        show(doc)
    return 0


def run_export(args):
    if "-" in args.json and args.output == "-":
        raise BlkfleetError("--json - answers on stdout: write the export to a file (-o FILE)")
    with Store(args.db, read_only=True) as store:
        text = store.export_csv() if args.format == "csv" else json.dumps(store.export_json(), indent=2) + "\n"
        stored = store.rows()
    rows, runs = len(stored), len({row["run_id"] for row in stored})
    if args.output == "-":
        sys.stdout.write(text)
    else:
        atomic_write(args.output, text)
    write_json(args.json, {"format": args.format, "output": args.output, "runs": runs, "rows": rows})
    return 0


def run_baseline_set(args):
    with Store(args.db, create=False) as store:
        rows = store.set_baseline(args.name, run_ids=args.runs, last=args.last, host=args.host,
                                  device=args.device, tags=args.tag, mode=args.mode)
    groups = {}
    for r in rows:
        groups.setdefault((r["host"], r["device"]), []).append(str(r["run_id"]))
    print(f"baseline {args.name}: " + "; ".join(f"{h} {d}: runs {' '.join(ids)}" for (h, d), ids in sorted(
        groups.items())))
    write_json(args.json, {"name": args.name, "members": [
        {"run": r["run_id"], "host": r["host"], "device": r["device"]} for r in rows]})
    return 0


def run_baseline_list(args):
    with Store(args.db, read_only=True) as store:
        baselines = store.baselines()
    if args.json:
        write_json(args.json, baselines)
        return 0
    for b in baselines:
        members = ", ".join(f"{m['host']}:{m['device']}#{m['run']}" for m in b["members"])
        print(f"{b['name']}  (created {b['created']})  {members}")
    return 0
