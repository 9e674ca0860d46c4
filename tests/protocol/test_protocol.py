"""The machine protocol (docs/protocol.md) on real runs of the commands the collection calls: with ``--json -``
stdout is exactly one document, valid against protocol.schema.json, its result against its command's schema,
its error code the one of blkfleet.codes; without it the human output is what it was."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from blkfleet import codes, protocol
from blkfleet.cli import main
from helpers import ENV, REPO, SCHEMAS
from helpers.protocol import checked, load, result_schemas, run

DATA = REPO / "tests" / "data"


def test_schemas_are_valid_and_name_every_code():
    for name in {protocol.SCHEMA, *result_schemas().values()}:
        load(name)
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(  # + results documents of the first version
        {protocol.SCHEMA, protocol.COMMANDS, *result_schemas().values(), "results-v1.schema.json"})
    enum = load(protocol.SCHEMA)["$defs"]["error"]["properties"]["code"]["enum"]
    assert enum == list(codes.ERRORS)
    for exit_code, meaning in codes.ERRORS.values():
        assert exit_code in codes.EXITS and meaning
    documented = (REPO / "docs" / "protocol.md").read_text()
    for code, (exit_code, _meaning) in codes.ERRORS.items():
        assert f"| `{code}` | {exit_code} |" in documented, code
    for command, name in result_schemas().items():
        assert f"`{command}`" in documented and name in documented, command


def test_job_documents_and_errors():
    doc, proc = run("job", "status", "--", "h6-no-such-run")
    assert doc["command"] == "job status" and doc["exit_code"] == 0 and doc["error"] is None
    assert doc["result"]["state"] == "none" and proc.stderr == ""
    doc, _ = run("job", "start", "h6-no-such-run", "--at", "1")
    assert doc["result"]["start_accepted"] is False and "not waiting for a start" in doc["result"]["problem"]
    doc, proc = run("job", "status", "bad/id")
    assert doc["exit_code"] == proc.returncode == 2 and doc["result"] is None
    assert doc["error"]["code"] == "invalid_input" and "invalid run ID" in doc["error"]["message"]
    assert proc.stderr == f"blkfleet: {doc['error']['message']}\n"
    doc, _ = run("job", "frobnicate", "x")  # an argument error: still one document
    assert doc["command"] == "job" and doc["error"]["code"] == "invalid_input"
    doc, _ = run("no-such-command")
    assert doc["command"] is None and doc["exit_code"] == 2
    # without --json the job document alone, on one line, as before
    human = subprocess.run([sys.executable, "-m", "blkfleet", "job", "status", "h6-no-such-run"], env=ENV,
                           capture_output=True, text=True)
    assert human.stdout.count("\n") == 1 and json.loads(human.stdout)["state"] == "none"


def test_record_and_bundle_documents(tmp_path):
    replay_dir = tmp_path / "replay"
    replay_dir.mkdir()
    doc, proc = run("record", "-d", DATA / "randmix", "-D", replay_dir, "-F")
    assert doc["exit_code"] == 0 and sum(f["ios"] for f in doc["result"]["files"]) == 2000
    assert "loop1" in proc.stderr  # the summary lines stay on stderr
    bundle = tmp_path / "b.bundle"
    doc, proc = run("bundle", "create", "-d", replay_dir, "-o", bundle, "-F")
    bundle_id = doc["result"]["bundle_id"]
    assert doc["command"] == "bundle create" and len(bundle_id) == 64
    assert run("bundle", "info", "--", bundle)[0]["result"]["bundle_id"] == bundle_id
    verified = run("bundle", "verify", bundle)[0]["result"]
    assert verified["ok"] and verified["ios"] == 2000 and verified["bundle_id"] == bundle_id
    engine = run("bundle", "engine", "-o", tmp_path / "engine.pyz")[0]["result"]
    assert engine["size"] == os.path.getsize(tmp_path / "engine.pyz")

    missing = tmp_path / "missing.bundle"
    doc, proc = run("bundle", "info", missing)
    assert doc["error"]["code"] == "not_found" and doc["error"]["errno"] == "ENOENT"
    assert doc["error"]["path"] == str(missing) and proc.returncode == 2
    (tmp_path / "junk").write_bytes(b"not a tar file" * 100)
    doc, proc = run("bundle", "verify", tmp_path / "junk")
    assert doc["error"]["code"] == "invalid_input" and "not a blkfleet bundle" in doc["error"]["message"]
    assert proc.stderr.count("\n") == 1


def test_bundle_create_prints_its_id_without_the_protocol(tmp_path):
    """Human output unchanged: the id on stdout without --json -, nothing but the document with it."""
    replay_dir = tmp_path / "replay"
    replay_dir.mkdir()
    assert main(["record", "-q", "-d", str(DATA / "randmix"), "-D", str(replay_dir), "-F"]) == 0
    proc = subprocess.run([sys.executable, "-m", "blkfleet", "bundle", "create", "-d", replay_dir, "-o",
                           tmp_path / "b", "-F", "--json", tmp_path / "m.json"], env=ENV, capture_output=True,
                          text=True)
    assert proc.returncode == 0 and len(proc.stdout.strip()) == 64
    assert json.loads((tmp_path / "m.json").read_text())["bundle_id"] == proc.stdout.strip()
    doc, proc = run("bundle", "create", "-d", replay_dir, "-o", tmp_path / "c", "-F", "--json", tmp_path / "n.json")
    assert json.loads((tmp_path / "n.json").read_text()) == doc["result"]  # every --json destination


def test_internal_error_is_still_one_document(capsys, monkeypatch):
    """A bug (no real input causes one: faked here) gives its traceback on stderr and internal_error, exit 70."""
    from blkfleet.replay import job

    def broken(run_id):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(job, "status", broken)
    assert main(["job", "status", "x", "--json", "-"]) == codes.INTERNAL_ERROR
    out, err = capsys.readouterr()
    doc = checked(out, "job status", codes.INTERNAL_ERROR)
    assert doc["error"] == {"code": "internal_error", "message": "ZeroDivisionError: division by zero"}
    assert "Traceback" in err


@pytest.mark.root
def test_replay_results_io_errors_and_refusals(tmp_path, loopdev):
    replay_dir = tmp_path / "replay"
    replay_dir.mkdir()
    assert main(["record", "-q", "-d", str(DATA / "randmix"), "-D", str(replay_dir), "-F"]) == 0
    target = loopdev()
    (tmp_path / "map").write_text(f"loop1 {target}\n")
    results = tmp_path / "r.json"
    doc, proc = run("replay", "-d", replay_dir, "-M", tmp_path / "map", "--json", results, "loop1")
    assert doc["exit_code"] == 0 and doc["result"]["total"]["ios"] == 2000
    assert json.loads(results.read_text()) == doc["result"] and "blkfleet replay: 2000 IOs" in proc.stderr

    subprocess.run(["mkfs.ext4", "-q", "-F", target], check=True)
    doc, proc = run("replay", "-d", replay_dir, "-M", tmp_path / "map", "-W", "--probe", "internal", "loop1")
    assert doc["error"]["code"] == "target_refused" and doc["exit_code"] == 2 and doc["result"] is None
    assert "refusing to write" in doc["error"]["message"] and proc.stderr.count("\n") == 1

    image = tmp_path / "ro.img"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    ro = subprocess.run(["losetup", "--show", "-f", "-r", str(image)], capture_output=True, text=True,
                        check=True).stdout.strip()
    try:
        (tmp_path / "ro.map").write_text(f"loop1 {ro}\n")
        doc, proc = run("replay", "-d", replay_dir, "-M", tmp_path / "ro.map", "-W", "loop1")
    finally:
        subprocess.run(["losetup", "-d", ro])
    assert doc["exit_code"] == codes.IO_ERRORS and doc["error"]["code"] == "io_errors"
    writes = doc["result"]["total"]["by_op"]["write"]["ios"]
    assert doc["error"]["message"] == f"{writes} IOs failed" and "Operation not permitted" in doc["error"]["first"]


def _replay_iterations(tmp_path, replay_dir, target, acc, iterations=4):
    results = tmp_path / f"x{acc}.json"
    (tmp_path / "map").write_text(f"loop1 {target}\n")
    doc, _ = run("replay", "-d", replay_dir, "-M", tmp_path / "map", "-x", acc, "-I", iterations, "--json", results,
                 "loop1")
    assert doc["exit_code"] == 0, doc
    return results


@pytest.mark.root
def test_results_store_and_verdicts(tmp_path, loopdev):
    """Real replays: four iterations at x1 make the baseline; four at x0.5 (half the IOPS) regress."""
    replay_dir = tmp_path / "replay"
    replay_dir.mkdir()
    assert main(["record", "-q", "-d", str(DATA / "randmix"), "-D", str(replay_dir), "-F"]) == 0
    target = loopdev()
    base = _replay_iterations(tmp_path, replay_dir, target, 1)
    slow = _replay_iterations(tmp_path, replay_dir, target, 0.5)
    db = tmp_path / "store.sqlite"

    doc, proc = run("results", "baseline", "list", "--db", db)
    assert doc["error"]["code"] == "not_found" and "no results store" in doc["error"]["message"]
    doc, proc = run("results", "add", "--db", db, "--tag", "k=v", "--", base, slow)
    runs = doc["result"]["runs"]
    assert [r["added"] for r in runs] == [True, True] and [r["file"] for r in runs] == [str(base), str(slow)]
    assert proc.stderr.count("added:") == 2  # the human lines, on stderr with --json -
    again = run("results", "add", "--db", db, "--", base)[0]["result"]["runs"]
    assert again == [dict(runs[0], added=False)]
    human = subprocess.run([sys.executable, "-m", "blkfleet", "results", "add", "--db", db, "--", base], env=ENV,
                           capture_output=True, text=True)
    assert human.stdout.startswith(f"already stored: run {runs[0]['run']} ")
    assert run("results", "check", base)[0]["result"]["files"][0]["file"] == str(base)

    doc, _ = run("results", "baseline", "set", "--db", db, "--run", runs[0]["run"], "--", "b")
    assert doc["result"]["name"] == "b" and {m["run"] for m in doc["result"]["members"]} == {runs[0]["run"]}
    listed = run("results", "baseline", "list", "--db", db)[0]["result"]
    bare = subprocess.run([sys.executable, "-m", "blkfleet", "results", "baseline", "list", "--json", "--db", db],
                          env=ENV, capture_output=True, text=True)
    assert listed == json.loads(bare.stdout) and listed[0]["name"] == "b"

    doc, proc = run("regress", "--baseline", "b", "--db", db, "--runs", runs[1]["run"], "--metric", "iops", "-q")
    assert doc["exit_code"] == codes.REGRESSION and doc["error"]["code"] == "regression"
    assert doc["result"]["verdict"] == "regression"
    doc, _ = run("regress", "--baseline", "b", "--db", db, "--runs", runs[1]["run"], "--min-samples", "50", "-q")
    assert doc["error"]["code"] == "insufficient_samples" and doc["result"]["verdict"] == "insufficient"
    doc, _ = run("report", "-o", tmp_path / "r.html", "--db", db, "--baseline", "b")
    assert doc["result"]["bytes"] == os.path.getsize(tmp_path / "r.html") and doc["result"]["runs"] >= 2


def _capture(*args):
    """``capture ... --json -``, waiting while another capture (another test, another developer) holds the
    machine's one ftrace tracer: the engine says so with the error code tracer_busy."""
    for _ in range(300):
        doc, proc = run("capture", *args)
        if (doc["error"] or {}).get("code") != "tracer_busy":
            return doc, proc
        time.sleep(1)
    pytest.fail("the ftrace tracer stayed busy")


@pytest.mark.root
def test_capture_documents_and_tracer_busy(tmp_path, loopdev, tracer):
    dev = loopdev()
    out = tempfile.mkdtemp(prefix="blkfleet-proto-", dir="/var/tmp")
    os.chmod(out, 0o700)
    try:
        # tracer held (the fixture): a capture that needs the tracer fails at once with tracer_busy
        doc, proc = run("capture", "start", "--backend", "ftrace", "--mode", "raw", "-d", dev, "-D", out,
                        "--token", "t1")
        assert doc["error"]["code"] == "tracer_busy" and doc["exit_code"] == 2, doc
        assert proc.stderr.count("\n") == 1 and "in use by another capture" in proc.stderr
        tracer.release()
        doc, _ = _capture("start", "-d", dev, "-D", out, "--token", "t1", "--force")
        assert doc["result"]["action"] == "start" and doc["result"]["started"] is True, doc
        assert run("capture", "status", "-D", out)[0]["result"]["state"] == "running"
        doc, _ = run("capture", "files", "-D", out)
        assert doc["error"]["code"] == "invalid_input" and "stop it first" in doc["error"]["message"]
        subprocess.run(["dd", f"if={dev}", "of=/dev/null", "bs=4k", "count=64", "iflag=direct"], check=True,
                       capture_output=True)
        doc, _ = run("capture", "stop", "-D", out, "--token", "t1")
        assert doc["result"]["stopped"] is True and doc["result"]["queued"] >= 64, doc
        files = run("capture", "files", "-D", out, "--token", "t1")[0]["result"]["files"]
        assert [f["name"] for f in files] == doc["result"]["files"] + ["capture.json"]
        for f in files:
            assert f["size"] == os.path.getsize(f["path"])
            assert f["sha256"] == subprocess.run(["sha256sum", f["path"]], capture_output=True, text=True,
                                                 check=True).stdout.split()[0]
        doc, _ = run("capture", "files", "-D", out, "--token", "other")
        assert doc["error"]["code"] == "already_running"
        doc, _ = run("capture", "stop", "-D", tmp_path / "none")
        assert doc["error"]["code"] in ("not_found", "invalid_input")
    finally:
        run("capture", "stop", "-D", out)
        tracer.acquire(timeout=60)
        shutil.rmtree(out, ignore_errors=True)
