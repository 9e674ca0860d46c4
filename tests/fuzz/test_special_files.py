"""A FIFO or a directory where a command expects an input file: refused with one line and exit 2, and a FIFO
without a writer never hangs the reader (each case runs under the harness's time limit)."""

import os

import pytest

from blkfleet.bundle import pack
from helpers import DATA
from helpers.fuzz import check_outcome, run_main

ORIGINAL = DATA / "seqlarge"


def file_inputs(x, work):
    """argv of every command that reads the file ``x``."""
    report = ["report", "-o", work / "r.html", "--db", work / "none.sqlite"]
    return [
        ["compare", ORIGINAL, x],
        ["compare", "--replay-results", x, ORIGINAL, ORIGINAL],
        [*report, "--original", ORIGINAL, "--io-log", x],
        [*report, "--results", x],
        [*report, "--stats", x],
        ["results", "check", x],
        ["results", "add", "--db", work / "none.sqlite", x],
        ["bundle", "info", x],
        ["bundle", "verify", x],
        ["bundle", "publish", x, "--to", work / "pub"],
        ["replay", "--bundle", x, "fzdev"],
        ["replay", "-d", work, "-M", x, "fzdev"],
        ["stats", "--format", "fio-iolog", x],
        ["import", "fio-iolog", "-D", work / "imp", x],
    ]


def dir_inputs(d, work):
    """argv of every command that reads ``d``'s fzdev.replay.0 or fzdev.blktrace.0."""
    report = ["report", "-o", work / "r.html", "--db", work / "none.sqlite"]
    return [
        ["replay", "-d", d, "fzdev"],
        ["bundle", "create", "-d", d, "-o", work / "b.bundle", "fzdev"],
        ["stats", d],
        ["transform", "-q", "-D", work / "t", d],
        ["export", "fio-iolog", "-o", work / "x.iolog", d],
        ["compare", d, ORIGINAL],
        ["compare", ORIGINAL, d, "--replay-device", "fzdev"],
        [*report, "--original", d],
    ]


def special(path, kind):
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.mkdir(path)


def outcome(argv):
    rc, _out, err = run_main(argv)
    assert check_outcome(rc, err, argv) is None and rc == 2, (argv, rc, err)
    return err


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_special_file_as_an_input_file(kind, tmp_path, monkeypatch):
    monkeypatch.setattr(pack, "engine_bytes", lambda: b"engine stand-in\n")
    x = tmp_path / "in"
    special(x, kind)
    for argv in file_inputs(x, tmp_path):
        err = outcome(argv)
        assert str(x) in err and ": 3:" not in err, err  # the file named, not a descriptor number


@pytest.mark.parametrize("name", ["fzdev.replay.0", "fzdev.blktrace.0"])
@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_special_file_in_an_input_directory(kind, name, tmp_path, monkeypatch):
    monkeypatch.setattr(pack, "engine_bytes", lambda: b"engine stand-in\n")
    d = tmp_path / "in"
    d.mkdir()
    special(d / name, kind)
    for argv in dir_inputs(d, tmp_path):
        outcome(argv)
