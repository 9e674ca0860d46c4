"""btreplay replays, as root and with write_enable onto the mapped devices, what its bundle file holds: a bundle
another user can change (theirs, in a directory they can write, or behind their link) is refused before anything
reads it; root's own, even under a sticky directory, is taken."""

import json
import os
import subprocess
import sys

from helpers import REPO

NOBODY = 65534
MODULE = REPO / "collections" / "ansible_collections" / "blkfleet" / "core" / "plugins" / "modules" / "btreplay.py"


def run_module(tmp_path, bundle):
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"bundle": str(bundle), "engine": str(tmp_path / "none")}}))
    proc = subprocess.run([sys.executable, str(MODULE), str(args)], env={**os.environ, "PYTHONPATH": str(REPO /
                          "collections")}, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout)


def test_a_bundle_another_user_can_change_is_refused(tmp_path):
    os.chmod(tmp_path, 0o755)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    theirs = sticky / "theirs.tar"
    theirs.write_bytes(b"not read")
    os.chown(theirs, NOBODY, NOBODY)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    (open_dir / "b.tar").write_bytes(b"not read")
    (tmp_path / "ours.tar").write_bytes(b"not a bundle")
    link, dir_link = sticky / "link", sticky / "dir"
    link.symlink_to(tmp_path / "ours.tar")
    dir_link.symlink_to(tmp_path)
    for path in (link, dir_link):
        os.lchown(path, NOBODY, NOBODY)
    for bundle, why in ((theirs, f"owned by uid {NOBODY}"), (open_dir / "b.tar", "others can write to"),
                        (link, f"the link {link} on the way to it is owned by uid {NOBODY}"),
                        (dir_link / "ours.tar", f"the link {dir_link} on the way to it is owned by uid {NOBODY}")):
        result = run_module(tmp_path, bundle)
        assert result.get("failed") and "refusing" in result["msg"] and why in result["msg"], (bundle, result)
    mine = sticky / "mine.tar"
    mine.write_bytes(b"not a bundle")
    result = run_module(tmp_path, mine)
    assert result.get("failed") and "refusing" not in result["msg"], result  # checked, then read (not a bundle)
