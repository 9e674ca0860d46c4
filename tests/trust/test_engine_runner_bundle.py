"""btreplay and replay_bundle run a bundle's installed engine only from a place nobody else can change, like any
engine: in an engine root others may add to (sticky, like /tmp), an engine.pyz another user put under the id of a
bundle's engine ran as root (btreplay: whatever it held; replay_bundle: once its content had been found right, so
that swapping it right after that check won the race)."""

import hashlib
import json
import os
import subprocess
import sys

from blkfleet.bundle import pack
from helpers import DATA, ENGINE, REPO
from helpers.bundles import record

NOBODY = 65534
CHILD = """
import json, subprocess, sys
from ansible_collections.blkfleet.core.plugins.modules import btreplay

class Module:
    def run_command(self, argv, cwd=None):
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
        return proc.returncode, proc.stdout, proc.stderr

    def get_bin_path(self, name):
        return None

    def fail_json(self, **result):
        print(json.dumps({"failed": result["msg"]}))
        sys.exit(0)

command, _manifest = btreplay._engine_of(Module(), {"engine": None, "engine_root": sys.argv[1]}, sys.argv[2])
print(json.dumps({"command": command}))
"""


def _engine_of(root, bundle):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "collections"), str(ENGINE)])}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), str(bundle)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_bundle_engine_another_user_installed_never_runs(tmp_path):
    root = tmp_path / "engines"
    root.mkdir()
    os.chmod(root, 0o1777)
    ours = root / ("b" * 64) / "engine.pyz"  # the newest installed engine: the real one, run from the checkout
    ours.parent.mkdir()
    ours.write_text(f"import runpy, sys\nsys.path.insert(0, {str(ENGINE)!r})\n"
                    "runpy.run_module('blkfleet', run_name='__main__', alter_sys=True)\n")
    bundle = tmp_path / "b.tar"
    manifest = pack.create(str(bundle), str(record(DATA / "randmix", tmp_path / "replay")), ("loop1",),
                           engine=b"engine")
    theirs = root / manifest["engine"]["sha256"] / "engine.pyz"
    theirs.parent.mkdir()
    theirs.write_text(f"open({str(tmp_path / 'pwned')!r}, 'w').close()\n")
    os.utime(theirs, (1, 1))
    for path in (theirs, theirs.parent):
        os.chown(path, NOBODY, NOBODY)
    got = _engine_of(root, bundle)
    assert f"{theirs} is owned by uid {NOBODY}" in got.get("failed", ""), got
    assert not (tmp_path / "pwned").exists()
    for path in (theirs, theirs.parent):
        os.chown(path, 0, 0)
    assert _engine_of(root, bundle) == {"command": [sys.executable, str(theirs)]}


def test_replay_bundle_refuses_an_engine_another_user_installed(tmp_path):
    root, dest = tmp_path / "engines", tmp_path / "bundles"
    root.mkdir()
    os.chmod(root, 0o1777)
    ran = tmp_path / "ran"
    engine = f"open({str(ran)!r}, 'w').close()\n".encode()
    bundle = tmp_path / "b.tar"
    manifest = pack.create(str(bundle), str(record(DATA / "randmix", tmp_path / "replay")), ("loop1",), engine=engine)
    theirs = root / manifest["engine"]["sha256"] / "engine.pyz"  # the right content, but theirs to change
    theirs.parent.mkdir()
    theirs.write_bytes(engine)
    for path in (theirs, theirs.parent):
        os.chown(path, NOBODY, NOBODY)
    args = {"src": str(bundle), "dest": str(dest), "engine_root": str(root), "bundle_id": manifest["bundle_id"],
            "checksum": hashlib.sha256(bundle.read_bytes()).hexdigest(), "engine_member": "engine.pyz",
            "engine_size": len(engine), "engine_sha256": manifest["engine"]["sha256"]}
    (tmp_path / "args.json").write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    module = REPO / "collections" / "ansible_collections" / "blkfleet" / "core" / "plugins" / "modules"
    proc = subprocess.run([sys.executable, str(module / "replay_bundle.py"), str(tmp_path / "args.json")],
                          env={**os.environ, "PYTHONPATH": str(REPO / "collections")}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout)
    assert result.get("failed") and f"{theirs} is owned by uid {NOBODY}" in result["msg"], result
    assert not ran.exists()
