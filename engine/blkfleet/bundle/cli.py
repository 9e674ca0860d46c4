"""``blkfleet bundle``: create, inspect, verify and extract replay bundles; build engine.pyz."""

import hashlib
import os
import sys
import tempfile

from .. import codes, protocol
from ..cliargs import directory, nonnegative_float, nonnegative_int, positive_float
from ..errors import BlkfleetError
from ..files import trusted_dir
from ..jsonout import show, write_json
from ..transform import cli as transform_cli
from ..transform.run import check_inputs
from . import pack
from .zipapp import build_engine_pyz


def add_parser(sub):
    p = sub.add_parser(
        "bundle",
        help="pack replay files, their manifest and engine.pyz into one content-addressed file",
        description="Replay bundles: one deterministic tar file holding manifest.json, engine.pyz and the replay "
        "files. The bundle id is the sha256 of the manifest's content.",
        epilog=codes.epilog(codes.SUCCESS, codes.BAD_INPUT),
    )
    bsub = p.add_subparsers(dest="bundle_command", metavar="ACTION", parser_class=type(p))
    bsub.required = True

    c = bsub.add_parser("create", help="make a bundle from replay files (prints its id)")
    c.add_argument("devices", nargs="*", metavar="DEV", help="recorded device names (e.g. sda)")
    c.add_argument("-d", "--input-directory", type=directory, required=True, metavar="REPLAY_DIR",
                   help="directory holding DEV.BASE.CPU replay files (native or btrecord format)")
    c.add_argument("-i", "--input-base", default="replay", metavar="BASE", help="replay file base (default replay)")
    c.add_argument("-F", "--find-records", action="store_true", help="bundle every device found in -d")
    c.add_argument("-o", "--output", required=True, metavar="FILE", help="bundle file to write")
    c.add_argument("--trace-dir", type=directory, metavar="DIR",
                   help="capture directory: its capture.json (device size, logical block size, host, as 'blkfleet "
                   "capture' writes it) and DEV.blktrace.N files (dev_t)")
    c.add_argument("--source-host", metavar="NAME", help="host the IO was captured on")
    c.add_argument("--record-json", metavar="FILE", help="'blkfleet record --json' summary, checked against the files")
    protocol.json_option(c, "the manifest (with '-', no id line)")
    transform_cli.add_options(c)
    c.set_defaults(func=run_create)

    i = bsub.add_parser("info", help="print a bundle's manifest as JSON (checks the manifest only)")
    i.add_argument("bundle", metavar="FILE")
    protocol.json_option(i, "the manifest (also printed on stdout)")
    i.set_defaults(func=run_info)

    v = bsub.add_parser("verify", help="check a bundle: manifest schema and id, every member's type, size, sha256")
    v.add_argument("bundle", metavar="FILE")
    protocol.json_option(v, "{ok, bundle_id, files, ios, bytes, engine_sha256}")
    v.set_defaults(func=run_verify)

    x = bsub.add_parser("extract", help="verify and extract a bundle into a new or empty directory")
    x.add_argument("bundle", metavar="FILE")
    x.add_argument("directory", metavar="DIR")
    protocol.json_option(x, "{bundle_id, directory, engine, replay_dir, ...}")
    x.set_defaults(func=run_extract)

    u = bsub.add_parser(
        "publish", help="put a bundle under its id where targets pull it from: a directory or an http(s) URL (PUT)",
        description="Verify the bundle, then write it as ID.tar with ID.tar.sha256 (sha256sum format) into a "
        "directory a web server serves, or PUT both under a base URL (ending in '/'), or PUT the bundle alone to "
        "any other URL (e.g. a presigned S3 PUT URL). Nothing changes when the same bytes are already there.",
        epilog=codes.epilog(codes.SUCCESS, codes.BAD_INPUT))
    u.add_argument("bundle", metavar="FILE")
    u.add_argument("--to", required=True, metavar="DIR_OR_URL",
                   help="directory (created if missing) or http(s) URL: a base ending in '/', or the bundle's own URL")
    u.add_argument("--check", action="store_true", help="change nothing; tell whether publishing would")
    u.add_argument("--timeout", type=positive_float, default=60.0, metavar="SEC",
                   help="seconds for the connection and for each read (default 60)")
    u.add_argument("--retries", type=nonnegative_int, default=3, metavar="N",
                   help="further attempts after a failure that may pass: no connection, a cut, HTTP 408, 429, 5xx "
                   "(default 3)")
    u.add_argument("--retry-delay", type=nonnegative_float, default=2.0, metavar="SEC",
                   help="seconds between attempts (default 2)")
    u.add_argument("--ca-file", metavar="FILE", help="CA certificates for https (default: the system's)")
    protocol.json_option(u, "{bundle_id, size, sha256, name, to, bundle, checksum_file, changed, ...}")
    u.set_defaults(func=run_publish)

    e = bsub.add_parser("engine", help="build engine.pyz (the engine as one zipapp) from this blkfleet")
    e.add_argument("-o", "--output", required=True, metavar="FILE")
    protocol.json_option(e, "{path, size, sha256}")
    e.set_defaults(func=run_build_engine)


def _summary(manifest):
    t = manifest["totals"]
    devices = ", ".join(d["name"] for d in manifest["devices"])
    return f"{t['files']} replay files ({devices}), {t['ios']} IOs, {t['bytes']} bytes"


def run_create(args):
    if transform_cli.given(args):  # bundle what the transforms make of the replay files (origin in the manifest)
        if args.record_json:
            raise BlkfleetError("--record-json describes the replay files before the transforms: not both")
        check_inputs([args.input_directory])
        with tempfile.TemporaryDirectory(prefix=".transform.", dir=os.path.dirname(os.path.abspath(args.output))) as d:
            # made 0700 by us, but the owner of -o's directory could rename it and put their own files in its place
            trusted_dir(d, "directory of the transformed replay files (beside -o)", create=False)
            transform_cli.transform_into([args.input_directory], d, args.input_base, args.input_base, args)
            return _create(args, d)
    return _create(args, args.input_directory)


def _create(args, replay_dir):
    manifest = pack.create(
        args.output, replay_dir, tuple(args.devices), args.find_records, args.input_base,
        args.trace_dir, args.source_host, args.record_json,
    )
    print(f"bundle {manifest['bundle_id']}: {_summary(manifest)} -> {args.output}", file=sys.stderr)
    write_json(args.json, manifest)
    if "-" not in args.json:
        print(manifest["bundle_id"])
    return 0


def run_info(args):
    manifest = pack.read_manifest(args.bundle)
    write_json(args.json, manifest)
    if "-" not in args.json:
        show(manifest)
    return 0


def run_verify(args):
    manifest = pack.verify(args.bundle)
    print(f"{args.bundle}: OK, bundle {manifest['bundle_id']}: {_summary(manifest)}", file=sys.stderr)
    t = manifest["totals"]
    write_json(args.json, {"ok": True, "bundle_id": manifest["bundle_id"], "files": t["files"], "ios": t["ios"],
                           "bytes": t["bytes"], "engine_sha256": manifest["engine"]["sha256"]})
    return 0


def run_extract(args):
    manifest = pack.extract(args.bundle, args.directory)
    print(f"{args.bundle}: extracted bundle {manifest['bundle_id']} into {args.directory}", file=sys.stderr)
    if args.json:
        d = args.directory
        write_json(args.json, {
            "bundle_id": manifest["bundle_id"], "directory": os.path.abspath(d),
            "engine": os.path.abspath(os.path.join(d, manifest["engine"]["path"])),
            "engine_sha256": manifest["engine"]["sha256"],
            "replay_dir": os.path.abspath(os.path.join(d, manifest["replay"]["directory"])),
            "base": manifest["replay"]["base"], "devices": manifest["replay"]["devices"],
        })
    return 0


def run_publish(args):
    from .publish import publish

    doc = publish(args.bundle, args.to, check=args.check, timeout=args.timeout, retries=args.retries,
                  retry_delay=args.retry_delay, ca_file=args.ca_file)
    verb = ("would publish" if doc["changed"] else "already published") if args.check else (
        "published" if doc["changed"] else "already published")
    print(f"bundle {doc['bundle_id']}: {verb} as {doc['bundle']}", file=sys.stderr)
    write_json(args.json, doc)
    if "-" not in args.json:
        print(doc["bundle"])
    return 0


def run_build_engine(args):
    data = build_engine_pyz(args.output)
    sha256 = hashlib.sha256(data).hexdigest()
    print(f"engine.pyz: {len(data)} bytes, sha256 {sha256} -> {args.output}", file=sys.stderr)
    write_json(args.json, {"path": os.path.abspath(args.output), "size": len(data), "sha256": sha256})
    return 0
