"""Commands that read a directory as root and make of it what root later writes to devices read only from a directory
nobody else can change: another user who could swap its files would choose the IOs written. ``record`` (its traces
become replay files), ``replay`` (-W writes what its files say), ``transform`` (its output is replay files) and
``bundle create`` (the hosts replay its files; its manifest holds what capture.json says)."""

import os

import pytest

from helpers.replay import map_file, spread_trace
from helpers.synth import fails, run_cli, typical_records, write_trace

NOBODY = 65534
WHOSE = ["theirs", "sticky", "world-writable", "through their link", "their link"]


def untrusted(tmp_path, whose, fill):
    """An input directory under tmp_path/shared (sticky and writable by all, as /tmp is) that another user owns, can
    add to or redirect, as ``whose`` says; ``fill(directory)`` puts the input files in it, and in tmp_path/victim/in
    (a directory of root's that their link points to, or leads to)."""
    shared, victim = tmp_path / "shared", tmp_path / "victim"
    for d in (shared, victim):
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
    fill(victim / "in")
    if not whose.endswith("link"):
        fill(inputs)
    return inputs


def traces(directory):
    write_trace(directory / "sda.blktrace.0", typical_records())


def replay_files(directory):
    spread_trace(directory, seconds=0.01, ios=20, cpus=1, device="sda")


def root_dir_under_a_sticky_one(tmp_path, fill):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (shared / "in").mkdir(mode=0o755)
    fill(shared / "in")
    return shared / "in"


def writes_to(device):
    """Writes completed on a block device so far (/sys/block/DEV/stat; a loop device's count outlives a detach, and
    udev may read a new one, never write)."""
    with open(f"/sys/block/{os.path.basename(device)}/stat") as f:
        return int(f.read().split()[4])


@pytest.mark.parametrize("whose", WHOSE)
def test_traces_are_read_only_where_nobody_else_can_change_them(tmp_path, whose):
    """An input directory another user owns, one others can add to (a sticky one such as /tmp itself, or one
    writable by all), or one reached through their link is refused with one line, before anything is written."""
    inputs = untrusted(tmp_path, whose, traces)
    out = tmp_path / "out"
    out.mkdir()
    fails(run_cli("record", "-q", "-d", inputs, "-D", out, "sda"), f"{inputs}: refusing this input directory")
    assert os.listdir(out) == []


def test_a_directory_of_roots_under_a_sticky_one_is_read(tmp_path):
    inputs = root_dir_under_a_sticky_one(tmp_path, traces)
    (tmp_path / "out").mkdir()
    proc = run_cli("record", "-q", "-d", inputs, "-D", tmp_path / "out", "sda")
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(tmp_path / "out") == ["sda.replay.0"]


@pytest.mark.parametrize("whose", WHOSE)
def test_replay_files_are_replayed_only_from_where_nobody_else_can_change_them(tmp_path, loopdev, whose):
    """``replay -W`` writes what the files say: from a directory another user could change it is refused with one
    line, before a target is opened (the device sees no write)."""
    inputs = untrusted(tmp_path, whose, lambda d: spread_trace(d, seconds=0.01, ios=20, cpus=1, op=1, device="sda"))
    target = loopdev(64 << 20)
    before = writes_to(target)
    fails(run_cli("replay", "-W", "-d", inputs, "-M", map_file(tmp_path, target, "sda"), "sda"),
          f"{inputs}: refusing this input directory")
    assert writes_to(target) == before


def test_replay_reads_a_directory_of_roots_under_a_sticky_one(tmp_path, loopdev):
    inputs = root_dir_under_a_sticky_one(tmp_path, replay_files)
    target = loopdev(64 << 20)
    proc = run_cli("replay", "-d", inputs, "-M", map_file(tmp_path, target, "sda"), "sda")
    assert proc.returncode == 0, proc.stderr


def test_a_missing_replay_directory_is_named_as_missing(tmp_path):
    fails(run_cli("replay", "-d", tmp_path / "nope", "sda"), f"{tmp_path / 'nope'}: cannot read directory")


@pytest.mark.parametrize("whose", WHOSE)
@pytest.mark.parametrize("command", ["bundle create -d", "bundle create --trace-dir", "bundle create -d (shifted)",
                                     "transform"])
def test_bundles_and_transforms_are_made_only_from_where_nobody_else_can_change_them(tmp_path, command, whose):
    """The hosts replay a bundle's files with -W (and a transform's output is replay files): their inputs are held
    to record's rule, one line, nothing written."""
    inputs = untrusted(tmp_path, whose, traces if command.endswith("--trace-dir") else replay_files)
    out = tmp_path / "out"
    out.mkdir()
    ours = tmp_path / "ours"
    ours.mkdir()
    replay_files(ours)
    argv = {
        "bundle create -d": ["bundle", "create", "-d", inputs, "-o", out / "b.bundle", "sda"],
        "bundle create --trace-dir": ["bundle", "create", "-d", ours, "--trace-dir", inputs, "-o", out / "b.bundle",
                                      "sda"],
        "bundle create -d (shifted)": ["bundle", "create", "-d", inputs, "--shift", "4096", "-o", out / "b.bundle",
                                       "sda"],
        "transform": ["transform", "-q", inputs, "-D", out / "t"],
    }[command]
    what = "trace directory" if command.endswith("--trace-dir") else "input directory"
    fails(run_cli(*argv), f"{inputs}: refusing this {what}")
    assert os.listdir(out) == []


def test_transformed_files_are_not_made_where_another_user_could_swap_them(tmp_path):
    """``bundle create`` with transforms writes the new replay files beside -o first: in a directory another user
    owns, they could rename that directory away and put theirs in its place."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    replay_files(ours)
    fails(run_cli("bundle", "create", "-d", ours, "--shift", "4096", "-o", theirs / "b.bundle", "sda"),
          "refusing this directory of the transformed replay files", f"{theirs} above it is owned by uid {NOBODY}")
    assert os.listdir(theirs) == []


@pytest.mark.parametrize("command", ["bundle", "bundle shifted", "bundle traces", "transform"])
def test_bundles_and_transforms_read_a_directory_of_roots_under_a_sticky_one(tmp_path, command):
    inputs = root_dir_under_a_sticky_one(tmp_path, traces if command == "bundle traces" else replay_files)
    ours = tmp_path / "ours"
    ours.mkdir()
    replay_files(ours)
    argv = {
        "bundle": ["bundle", "create", "-d", inputs, "-o", tmp_path / "b.bundle", "sda"],
        "bundle shifted": ["bundle", "create", "-d", inputs, "--shift", "4096", "-o", inputs.parent / "b.bundle",
                           "sda"],  # the transformed files are made in a directory of ours in the sticky one
        "bundle traces": ["bundle", "create", "-d", ours, "--trace-dir", inputs, "-o", tmp_path / "b.bundle", "sda"],
        "transform": ["transform", "-q", inputs, "-D", tmp_path / "t"],
    }[command]
    proc = run_cli(*argv)
    assert proc.returncode == 0, proc.stderr


MAP_CASES = ["theirs", "writable by all", "in a directory writable by all", "through their link", "their link"]


@pytest.mark.parametrize("whose", MAP_CASES)
def test_the_device_map_is_read_only_from_a_file_nobody_else_can_change(tmp_path, loopdev, whose):
    """The map decides which device ``-W`` writes: one another user owns, may write, may replace (in a directory
    they can write, not sticky) or redirect (their link on the way) is refused with one line, no write done."""
    inputs = root_dir_under_a_sticky_one(tmp_path, lambda d: spread_trace(d, seconds=0.01, ios=20, cpus=1, op=1,
                                                                           device="sda"))
    target = loopdev(64 << 20)
    ours = map_file(tmp_path, target, "sda")
    shared = tmp_path / "shared"
    path = {"theirs": ours, "writable by all": ours, "in a directory writable by all": tmp_path / "open" / "map",
            "through their link": shared / "link" / "map", "their link": shared / "map-link"}[whose]
    if whose == "theirs":
        os.chown(ours, NOBODY, NOBODY)
    if whose == "writable by all":
        os.chmod(ours, 0o666)
    if whose == "in a directory writable by all":
        path.parent.mkdir()
        os.chmod(path.parent, 0o777)
        path.write_bytes(ours.read_bytes())
    if whose == "through their link":
        (shared / "link").symlink_to(tmp_path)
        os.lchown(shared / "link", NOBODY, NOBODY)
    if whose == "their link":
        path.symlink_to(ours)
        os.lchown(path, NOBODY, NOBODY)
    before = writes_to(target)
    fails(run_cli("replay", "-W", "-d", inputs, "-M", path, "sda"), f"{path}: refusing this device map")
    assert writes_to(target) == before


def test_a_device_map_of_roots_in_a_sticky_directory_is_read(tmp_path, loopdev):
    """In a sticky directory (as /tmp) only the file's owner may replace it: root's map there is used."""
    inputs = root_dir_under_a_sticky_one(tmp_path, replay_files)
    target = loopdev(64 << 20)
    path = tmp_path / "shared" / "map"
    path.write_bytes(map_file(tmp_path, target, "sda").read_bytes())
    proc = run_cli("replay", "-d", inputs, "-M", path, "sda")
    assert proc.returncode == 0, proc.stderr
