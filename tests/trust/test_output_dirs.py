"""Commands run as root refuse to write through a directory another user could redirect: ``blkfleet workdir``,
``replay --json/--io-log``, ``report -o`` and a new results store (exit 2, one line, nothing written)."""

import json
import os

import pytest

from blkfleet.bundle import pack
from helpers import DATA
from helpers.bundles import record
from helpers.synth import run_cli
from helpers.synth_results import make_doc, write_doc

NOBODY = 65534


@pytest.fixture
def planted(tmp_path):
    """A sticky world-writable directory (like /tmp) where uid 65534 made ``out`` a link to a directory of root's;
    returns (the link, the directory it points to)."""
    shared, victim = tmp_path / "shared", tmp_path / "victim"
    shared.mkdir()
    victim.mkdir()
    os.chmod(shared, 0o1777)
    (shared / "out").symlink_to(victim)
    os.lchown(shared / "out", NOBODY, NOBODY)
    return shared / "out", victim


@pytest.mark.parametrize("argv", [
    ["workdir", "{out}/results"],
    ["workdir", "--check", "{out}/results"],
    ["replay", "-d", "{empty}", "--json", "{out}/r.json", "sda"],
    ["replay", "-d", "{empty}", "--io-log", "{out}/r.iolog", "sda"],
    ["report", "-o", "{out}/report.html", "--results", "{doc}"],
    ["results", "add", "--db", "{out}/store.sqlite", "{doc}"],
])
def test_a_planted_link_is_refused_with_one_line(planted, tmp_path, argv):
    link, victim = planted
    empty = tmp_path / "empty"
    empty.mkdir()
    doc = tmp_path / "results.json"
    write_doc(doc, make_doc())
    proc = run_cli(*[a.format(out=link, empty=empty, doc=doc) for a in argv])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"the link {link} is owned by uid {NOBODY}" in lines[0], proc.stderr
    assert os.listdir(victim) == []


def test_workdir_makes_our_directory_and_says_so(tmp_path):
    proc = run_cli("workdir", "--json", "-", "--", str(tmp_path / "a" / "b"))
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["result"]["created"] is True and doc["result"]["real_path"] == str(
        tmp_path / "a" / "b")
    assert os.path.isdir(tmp_path / "a" / "b")


def test_a_report_may_go_into_a_sticky_directory(tmp_path):
    """Like /tmp: the report is a new file renamed into place, so a directory others can add to but not rename in
    is fine for it (the directories above it and any link on the way are still checked)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    doc = tmp_path / "results.json"
    write_doc(doc, make_doc())
    proc = run_cli("report", "-o", shared / "report.html", "--results", doc)
    assert proc.returncode == 0, proc.stderr
    assert (shared / "report.html").stat().st_size > 0


@pytest.mark.parametrize("argv", [["bundle", "extract", "{bundle}", "{out}/x"],
                                  ["bundle", "publish", "--to", "{out}/pub", "{bundle}"]])
def test_a_bundle_is_not_put_through_a_planted_link(planted, tmp_path, argv):
    """Extraction and publication directories are made and checked through the links on the way: one of
    another user's is refused, nothing made where it points."""
    link, victim = planted
    bundle = tmp_path / "b.tar"
    pack.create(str(bundle), str(record(DATA / "randmix", tmp_path / "replay")), ("loop1",), engine=b"engine")
    proc = run_cli(*[a.format(out=link, bundle=bundle) for a in argv])
    assert proc.returncode == 2, proc.stderr
    assert f"the link {link} above it is owned by uid {NOBODY}" in proc.stderr
    assert os.listdir(victim) == []


@pytest.mark.parametrize("argv", [
    ["record", "-q", "-d", "{data}", "-D", "{out}", "loop1"],
    ["transform", "-q", "{replay}", "-D", "{out}"],
    ["import", "fio-iolog", "-q", "{iolog}", "-D", "{out}"],
])
@pytest.mark.parametrize("whose", ["theirs", "sticky", "through their link"])
def test_replay_files_go_only_where_nobody_else_can_change_them(tmp_path, argv, whose):
    """Replay files a later replay (-W) trusts: record, transform and import refuse an output directory another user
    owns, one others can add to (sticky), or one reached through their link, with one line, writing nothing."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    out = {"theirs": shared / "out", "sticky": shared, "through their link": shared / "link" / "out"}[whose]
    if whose == "theirs":
        out.mkdir()
        os.chown(out, NOBODY, NOBODY)
    if whose == "through their link":
        (tmp_path / "victim" / "out").mkdir(parents=True)  # root's: they may point the link elsewhere later
        (shared / "link").symlink_to(tmp_path / "victim")
        os.lchown(shared / "link", NOBODY, NOBODY)
    before = {p: sorted(os.listdir(p)) for p in (shared, tmp_path)}
    replay = record(DATA / "randmix", tmp_path / "replay")
    proc = run_cli(*[a.format(data=DATA / "randmix", replay=replay, iolog=DATA / "foreign" / "fio_v3.iolog", out=out)
                     for a in argv])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{out}: refusing this output directory" in lines[0], proc.stderr
    assert sorted(os.listdir(shared)) == before[shared]
    if whose != "sticky":
        assert os.listdir(out) == []


@pytest.mark.parametrize("argv", [["transform", "-q", "{replay}", "-D", "{out}"],
                                  ["import", "fio-iolog", "-q", "{iolog}", "-D", "{out}"]])
def test_a_new_output_directory_is_made_under_a_sticky_one(tmp_path, argv):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    replay = record(DATA / "randmix", tmp_path / "replay")
    out = shared / "new" / "out"
    proc = run_cli(*[a.format(replay=replay, iolog=DATA / "foreign" / "fio_v3.iolog", out=out) for a in argv])
    assert proc.returncode == 0, proc.stderr
    assert "origin.json" in os.listdir(out) and os.stat(shared / "new").st_mode & 0o777 == 0o755
