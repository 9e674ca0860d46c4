"""replay_bundle installs a bundle only into a ``dest`` nobody but root can change: in one another user owned, they
put a link to their own copy of the bundle at its name and a pull reported it installed (they could change it
before a replay); through their link, a push put the bundle where the link pointed."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from blkfleet.bundle import pack
from helpers import DATA, ENGINE, REPO
from helpers.bundles import record

NOBODY = 65534
MODULE = REPO / "collections" / "ansible_collections" / "blkfleet" / "core" / "plugins" / "modules" / "replay_bundle.py"
ENGINE_PY = (f"import runpy, sys\nsys.path.insert(0, {str(ENGINE)!r})\n"
             "runpy.run_module('blkfleet', run_name='__main__', alter_sys=True)\n").encode()


@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / "b.tar"
    manifest = pack.create(str(path), str(record(DATA / "randmix", tmp_path / "replay")), ("loop1",),
                           engine=ENGINE_PY)
    return path, manifest


def _run(tmp_path, args):
    (tmp_path / "args.json").write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run([sys.executable, str(MODULE), str(tmp_path / "args.json")],
                          env={**os.environ, "PYTHONPATH": str(REPO / "collections")}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout)


def _push(tmp_path, bundle, dest):
    path, manifest = bundle
    return _run(tmp_path, {
        "src": str(path), "dest": str(dest), "engine_root": str(tmp_path / "engines"),
        "bundle_id": manifest["bundle_id"], "checksum": hashlib.sha256(path.read_bytes()).hexdigest(),
        "engine_member": "engine.pyz", "engine_size": len(ENGINE_PY), "engine_sha256": manifest["engine"]["sha256"]})


def test_a_pull_never_takes_their_link_for_the_installed_bundle(tmp_path, bundle):
    path, manifest = bundle
    dest, theirs = tmp_path / "bundles", tmp_path / "theirs.tar"
    dest.mkdir()
    theirs.write_bytes(path.read_bytes())  # the right bytes today; theirs to change before the replay
    link = dest / f"{manifest['bundle_id']}.tar"
    link.symlink_to(theirs)
    for p in (dest, theirs):
        os.chown(p, NOBODY, NOBODY)
    os.lchown(link, NOBODY, NOBODY)
    result = _run(tmp_path, {"url": f"http://192.0.2.1/{manifest['bundle_id']}.tar", "dest": str(dest),
                             "engine_root": str(tmp_path / "engines")})
    assert result.get("failed") and "installed" not in result, result
    assert result["msg"] == (f"refusing the directory {dest}: {dest} is owned by uid {NOBODY} (use a directory only "
                             "root can write to, such as one under /var/lib/blkfleet)")
    assert not (tmp_path / "engines").exists()


def test_a_push_never_goes_through_their_link(tmp_path, bundle):
    shared, victim = tmp_path / "shared", tmp_path / "victim"
    shared.mkdir()
    victim.mkdir()
    os.chmod(shared, 0o1777)
    (shared / "bundles").symlink_to(victim)  # root's directory today, wherever they point it tomorrow
    os.lchown(shared / "bundles", NOBODY, NOBODY)
    result = _push(tmp_path, bundle, shared / "bundles")
    assert result.get("failed") and f"refusing the directory {shared}/bundles" in result["msg"], result
    assert os.listdir(victim) == [] and not (tmp_path / "engines").exists()


def test_a_push_into_a_new_directory_under_a_sticky_one(tmp_path, bundle):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    result = _push(tmp_path, bundle, shared / "new" / "bundles")
    assert not result.get("failed") and result["installed"] and result["changed"], result
    assert result["path"] == str(shared / "new" / "bundles" / f"{bundle[1]['bundle_id']}.tar")
    assert os.path.isfile(result["path"]) and os.stat(shared / "new").st_mode & 0o777 == 0o755
