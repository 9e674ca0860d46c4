"""``blkfleet bundle publish``: into a directory a web server serves, and by PUT to a real nginx (Debian's), under the
bundle's id with its sha256sum file; idempotent; a damaged bundle, a refused PUT and a server that does not answer
fail with one line, and a presigned URL's signature never reaches a message."""

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tarfile

import pytest

from blkfleet.bundle import pack, publish
from helpers.protocol import ENV, checked
from netns.web_server import Nginx, available


def cli(*args):
    proc = subprocess.run([sys.executable, "-m", "blkfleet", "bundle", "publish", *map(str, args), "--json", "-"],
                          capture_output=True, text=True, env=ENV, timeout=120)
    doc = checked(proc.stdout)
    assert doc["command"] == ("bundle" if "argument" in (doc["error"] or {}).get("message", "") else "bundle publish")
    return doc, proc


def damage(path):
    """Flip bytes inside the first replay file's data (not the tar padding after the end marker, which no one
    reads)."""
    with tarfile.open(path) as tar:
        offset = next(m.offset_data for m in tar if m.name.startswith("replay/"))
    with open(path, "r+b") as f:
        f.seek(offset + 100)
        f.write(b"\xff" * 16)


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_publish_to_a_directory(bundle_file, tmp_path):
    bundle_id = pack.read_manifest(str(bundle_file))["bundle_id"]
    www = tmp_path / "www"
    doc, proc = cli(bundle_file, "--to", www, "--check")
    assert doc["result"]["changed"] and doc["result"]["checked"] and not www.exists()
    doc, proc = cli(bundle_file, "--to", www)
    result = doc["result"]
    assert proc.returncode == 0 and result["changed"] and result["bundle_id"] == bundle_id
    assert sorted(os.listdir(www)) == [f"{bundle_id}.tar", f"{bundle_id}.tar.sha256"]
    assert result["bundle"] == str(www / f"{bundle_id}.tar") and result["sha256"] == sha256(bundle_file)
    assert (www / f"{bundle_id}.tar").read_bytes() == bundle_file.read_bytes()
    check = subprocess.run(["sha256sum", "-c", f"{bundle_id}.tar.sha256"], cwd=www, capture_output=True, text=True)
    assert check.returncode == 0 and "OK" in check.stdout
    mtime = os.stat(www / f"{bundle_id}.tar").st_mtime_ns
    doc, _ = cli(bundle_file, "--to", www)
    assert doc["result"]["changed"] is False and os.stat(www / f"{bundle_id}.tar").st_mtime_ns == mtime
    # a damaged copy under the id is replaced, not kept
    damage(www / f"{bundle_id}.tar")
    assert cli(bundle_file, "--to", www, "--check")[0]["result"]["changed"] is True
    assert cli(bundle_file, "--to", www)[0]["result"]["changed"] is True
    assert sha256(www / f"{bundle_id}.tar") == sha256(bundle_file)


def test_a_damaged_bundle_is_not_published(bundle_file, tmp_path):
    bad = tmp_path / "bad.bundle"
    shutil.copyfile(bundle_file, bad)
    damage(bad)
    doc, proc = cli(bad, "--to", tmp_path / "www")
    assert proc.returncode == 2 and doc["error"]["code"] == "invalid_input" and "sha256 mismatch" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "www").exists()


def test_bad_destinations(bundle_file, tmp_path):
    doc, proc = cli(bundle_file, "--to", "ftp://example.invalid/x/")
    assert proc.returncode == 2 and "not an http:// or https:// URL" in doc["error"]["message"]
    doc, proc = cli(bundle_file, "--to", "http://127.0.0.1:99999/x/")
    assert proc.returncode == 2 and "not a valid URL" in doc["error"]["message"]
    doc, proc = cli(bundle_file, "--to", "http://h/x/", "--retries", "-1")
    assert proc.returncode == 2 and "--retries: must be an integer >= 0" in doc["error"]["message"]
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o777)
    os.chmod(open_dir, 0o777)
    doc, proc = cli(bundle_file, "--to", open_dir)
    assert proc.returncode == 2 and "others can write" in doc["error"]["message"] and os.listdir(open_dir) == []


def test_no_answer_is_retried_and_the_signature_never_shown(bundle_file):
    url = f"http://127.0.0.1:{free_port()}/b/x.tar?X-Amz-Signature=s3cr3t&X-Amz-Credential=AKIA"
    doc, proc = cli(bundle_file, "--to", url, "--retries", "2", "--retry-delay", "0")
    assert proc.returncode == 2 and doc["error"]["code"] == "transfer_failed"
    message = doc["error"]["message"]
    assert message.startswith("http://127.0.0.1:") and "/b/x.tar: PUT failed: " in message
    assert "(after 3 attempts)" in message and "s3cr3t" not in proc.stdout + proc.stderr
    assert "AKIA" not in proc.stdout + proc.stderr


@pytest.fixture
def nginx(tmp_path):
    if not available() or os.geteuid() != 0:
        pytest.skip("needs root and Debian's nginx (tests/run installs it)")
    root = tmp_path / "www"
    root.mkdir()
    with Nginx(str(root), "127.0.0.1", free_port(), str(tmp_path / "nginx")) as web:
        yield web


@pytest.mark.root
def test_put_to_a_real_server(bundle_file, nginx):
    bundle_id = pack.read_manifest(str(bundle_file))["bundle_id"]
    base = nginx.url("bundles/")
    doc, proc = cli(bundle_file, "--to", base, "--check")
    assert doc["result"]["changed"] is True and not os.path.exists(os.path.join(nginx.root, "bundles"))
    doc, proc = cli(bundle_file, "--to", base)
    result = doc["result"]
    assert proc.returncode == 0 and result["changed"] and result["attempts"] == 1, proc.stderr
    assert result["bundle"] == base + f"{bundle_id}.tar" and result["checksum_file"] == base + f"{bundle_id}.tar.sha256"
    served = os.path.join(nginx.root, "bundles")
    assert sha256(os.path.join(served, f"{bundle_id}.tar")) == sha256(bundle_file)
    with open(os.path.join(served, f"{bundle_id}.tar.sha256")) as f:
        assert f.read() == f"{sha256(bundle_file)}  {bundle_id}.tar\n"
    puts = [r for r in nginx.requests() if r["method"] == "PUT"]
    assert [r["status"] for r in puts] == [201, 201]
    # again: the checksum file names the same bytes and the bundle has their size: nothing sent
    doc, proc = cli(bundle_file, "--to", base)
    assert doc["result"]["changed"] is False and doc["result"]["attempts"] == 0
    assert len([r for r in nginx.requests() if r["method"] == "PUT"]) == 2
    # a URL that names the object itself (a presigned PUT URL): the bundle alone, its query never shown
    doc, proc = cli(bundle_file, "--to", nginx.url("one/b.tar?X-Amz-Signature=s3cr3t"))
    assert doc["result"]["changed"] and doc["result"]["checksum_file"] is None
    assert doc["result"]["bundle"] == nginx.url("one/b.tar") and "s3cr3t" not in proc.stderr
    assert sha256(os.path.join(nginx.root, "one", "b.tar")) == sha256(bundle_file)


@pytest.mark.root
def test_a_refused_put_is_not_retried(bundle_file, nginx):
    doc, proc = cli(bundle_file, "--to", nginx.url("ro/"), "--retries", "3", "--retry-delay", "0")
    assert proc.returncode == 2 and doc["error"]["code"] == "transfer_failed", proc.stderr
    message = doc["error"]["message"]
    assert message.startswith(nginx.url("ro/")) and message.endswith(".tar: PUT failed: HTTP 405 Not Allowed")
    assert "attempts" not in doc["error"]["message"] and proc.stderr.count("\n") == 1
    assert len([r for r in nginx.requests() if r["method"] == "PUT"]) == 1


def test_publish_module_api(bundle_file, tmp_path):
    doc = publish.publish(str(bundle_file), str(tmp_path / "d"))
    assert doc["changed"] and publish.parse_checksum(
        open(doc["checksum_file"]).read(), doc["name"]) == doc["sha256"]
    assert publish.redact("https://u:p@h:8/a/b?sig=1#f") == "https://h:8/a/b"
    assert publish.join("http://h/a/?q=1", "x y.tar") == "http://h/a/x%20y.tar?q=1"
