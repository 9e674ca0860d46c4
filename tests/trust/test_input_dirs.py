"""``blkfleet record`` reads traces, as root, only from a directory nobody else can change: another user who could
swap its per-CPU trace files would choose the IOs of the replay files (which a later replay with -W writes)."""

import os

import pytest

from helpers.synth import fails, run_cli, typical_records, write_trace

NOBODY = 65534


@pytest.mark.parametrize("whose", ["theirs", "sticky", "world-writable", "through their link", "their link"])
def test_traces_are_read_only_where_nobody_else_can_change_them(tmp_path, whose):
    """An input directory another user owns, one others can add to (a sticky one such as /tmp itself, or one
    writable by all), or one reached through their link is refused with one line, before anything is written."""
    shared, victim, out = tmp_path / "shared", tmp_path / "victim", tmp_path / "out"
    for d in (shared, victim, out):
        d.mkdir()
    os.chmod(shared, 0o1777)
    (victim / "in").mkdir()
    inputs = {"theirs": shared / "in", "sticky": shared, "world-writable": shared / "in",
              "through their link": shared / "link" / "in", "their link": shared / "link"}[whose]
    if whose == "theirs":
        inputs.mkdir()
        os.chown(inputs, NOBODY, NOBODY)
    if whose == "world-writable":
        inputs.mkdir(mode=0o777)
        os.chmod(inputs, 0o777)
    if whose.endswith("link"):
        (shared / "link").symlink_to(victim / ("in" if whose == "their link" else ""))
        os.lchown(shared / "link", NOBODY, NOBODY)
    write_trace(victim / "in" / "sda.blktrace.0", typical_records())
    if not whose.endswith("link"):
        write_trace(inputs / "sda.blktrace.0", typical_records())
    fails(run_cli("record", "-q", "-d", inputs, "-D", out, "sda"), f"{inputs}: refusing this input directory")
    assert os.listdir(out) == []


def test_a_directory_of_roots_under_a_sticky_one_is_read(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (shared / "in").mkdir(mode=0o755)
    (tmp_path / "out").mkdir()
    write_trace(shared / "in" / "sda.blktrace.0", typical_records())
    proc = run_cli("record", "-q", "-d", shared / "in", "-D", tmp_path / "out", "sda")
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(tmp_path / "out") == ["sda.replay.0"]
