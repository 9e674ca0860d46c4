"""Output files a user named are replaced, never written through: a link that uid 65534 planted at the path in a
sticky directory like /tmp (``--json FILE``, ``results export -o``, ``regress --markdown``), or at ``record
--compat``'s replay and ``-v`` .rec files in its output directory (one of root's: a sticky one is refused), is
replaced by the new file and what it pointed to stays as it was."""

import os

import pytest

from blkfleet import clidocs
from blkfleet.results.store import Store
from helpers.synth import run_cli, typical_records, write_trace
from helpers.synth_results import make_doc

NOBODY = 65534


def _plant(shared, name, victim):
    link = shared / name
    link.symlink_to(victim)
    os.lchown(link, NOBODY, NOBODY)
    return link


@pytest.mark.parametrize("argv, outputs", [
    (["workdir", "--json", "{shared}/w.json", "{tmp}/made"], ["w.json"]),
    (["results", "export", "--db", "{db}", "-o", "{shared}/e.csv", "--format", "csv"], ["e.csv"]),
    (["results", "export", "--db", "{db}", "-o", "{shared}/e.json", "--json", "{shared}/r.json"],
     ["e.json", "r.json"]),
    (["regress", "--db", "{db}", "--baseline", "base", "-q", "--insufficient-ok", "--markdown", "{shared}/v.md"],
     ["v.md"]),
    (["record", "-q", "--compat", "-v", "-d", "{tmp}/in", "-D", "{shared}", "sda"],
     ["sda.replay.0", "sda.replay.0.rec"]),
])
def test_a_link_planted_at_an_output_is_replaced_not_followed(tmp_path, argv, outputs):
    shared, victim = tmp_path / "shared", tmp_path / "victim"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    if argv[0] == "record":  # a directory of root's: record refuses a sticky one
        shared = tmp_path / "own"
        shared.mkdir()
    victim.write_text("keep")
    (tmp_path / "in").mkdir()
    write_trace(tmp_path / "in" / "sda.blktrace.0", typical_records())
    db = tmp_path / "store.sqlite"
    with Store(str(db)) as store:
        store.add(make_doc(seed=1))
        store.set_baseline("base", last=1)
    for name in outputs:
        _plant(shared, name, victim)
    proc = run_cli(*[a.format(shared=shared, tmp=tmp_path, db=db) for a in argv])
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == "keep"
    for name in outputs:
        st = os.lstat(shared / name)
        assert not os.path.islink(shared / name) and st.st_uid == os.geteuid() and st.st_size > 0, name


def test_generated_docs_replace_a_planted_link(tmp_path):
    """``clidocs.write_all`` (the package build's man pages and completions) into a tree another user could add to:
    their link at a page's path is replaced, its target left as it was."""
    victim = tmp_path / "victim"
    victim.write_text("keep")
    man = tmp_path / "root" / clidocs.MAN_DIR
    man.mkdir(parents=True)
    link = _plant(man, "blkfleet.1", victim)
    clidocs.write_all(str(tmp_path / "root"))
    assert victim.read_text() == "keep"
    assert not os.path.islink(link) and link.read_text().startswith(".TH BLKFLEET 1")
