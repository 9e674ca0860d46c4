"""blkfleet.files: trusted directories, files created without following links, atomic writes, JSON reads."""

import json
import os

import pytest

from blkfleet import files
from blkfleet.errors import BlkfleetError

NOBODY = 65534


def test_new_directory_is_created_and_trusted(tmp_path):
    path = files.trusted_dir(tmp_path / "a" / "b")
    assert os.path.isdir(path) and files.untrusted_reason(path) is None
    assert oct(os.stat(files.private_dir(tmp_path / "p")).st_mode & 0o777) == "0o700"


def test_world_writable_or_linked_directory_is_refused(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    with pytest.raises(BlkfleetError, match="others can write"):
        files.trusted_dir(open_dir)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(BlkfleetError, match="symbolic link"):
        files.trusted_dir(link)


def test_directory_under_a_non_sticky_world_writable_parent_is_refused(tmp_path):
    parent = tmp_path / "shared"
    parent.mkdir()
    (parent / "mine").mkdir()
    os.chmod(parent, 0o777)
    with pytest.raises(BlkfleetError, match="above it"):
        files.trusted_dir(parent / "mine")
    os.chmod(parent, 0o1777)  # sticky, like /tmp: others cannot rename what is ours
    assert files.trusted_dir(parent / "mine")


@pytest.mark.root
def test_directory_owned_by_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(BlkfleetError, match="owned by uid 65534"):
        files.trusted_dir(theirs)
    inner = tmp_path / "theirs" / "inner"
    inner.mkdir()
    with pytest.raises(BlkfleetError, match="above it is owned"):
        files.trusted_dir(inner)


def test_create_new_never_follows_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "planted").symlink_to(victim)
    with pytest.raises(FileExistsError):
        files.create_new(tmp_path / "planted")
    assert victim.read_text() == "keep"


def test_atomic_write_replaces_a_link_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "state.json").symlink_to(victim)
    files.write_json_file(tmp_path / "state.json", {"a": 1})
    assert victim.read_text() == "keep"
    assert json.loads((tmp_path / "state.json").read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["state.json", "victim"]


def test_atomic_file_keeps_the_old_file_when_the_block_fails(tmp_path):
    """A bundle or replay file written piece by piece: the old one stays until the new one is complete; the new
    one gets exactly its mode whatever the umask, and a failure leaves no temporary file."""
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), files.atomic_file(target) as f:
        f.write(b"half")
        raise RuntimeError("failed midway")
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["out.bin"]
    old = os.umask(0o077)
    try:
        with files.atomic_file(target, 0o755, sync=False) as f:
            f.write(b"new")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"new" and os.stat(target).st_mode & 0o777 == 0o755
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]


def test_atomic_file_onto_a_directory_is_one_line_naming_it(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(BlkfleetError, match=f"^{tmp_path / 'taken'}: cannot put the new file in place: "):
        files.atomic_write(tmp_path / "taken", b"x")
    assert sorted(os.listdir(tmp_path)) == ["taken"]


def test_open_append_refuses_a_link(tmp_path):
    (tmp_path / "log").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        files.open_append(tmp_path / "log")
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("data, problem", [
    (b"[" * 100000, "nested too deeply"),
    (b'{"a": "\xff"}', "not UTF-8"),
    (b"{", "not valid JSON"),
])
def test_read_json_gives_one_line(tmp_path, data, problem):
    path = tmp_path / "doc.json"
    path.write_bytes(data)
    with pytest.raises(BlkfleetError, match=problem) as err:
        files.read_json(path, "state")
    assert "\n" not in str(err.value)


def test_read_json_bounds_size_and_refuses_links_when_asked(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(["x" * 100]))
    with pytest.raises(BlkfleetError, match="larger than 10 bytes"):
        files.read_json(path, max_bytes=10)
    (tmp_path / "link.json").symlink_to(path)
    with pytest.raises(BlkfleetError, match="cannot read"):
        files.read_json(tmp_path / "link.json", nofollow=True)


@pytest.mark.parametrize("name", ["sda", "nvme0n1", "dm-0", "cciss_c0d0", "loop1", "md127", "a.b+c@d"])
def test_device_names_accepted(name):
    from blkfleet.names import check_name

    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-W", "--force", "a/b", "a\nb", "pts_.._.._tmp_x", "x_._y", "..", "a b",
                                  "sda\n", "x" * 101, 7, None])
def test_device_names_refused(name):
    from blkfleet.names import check_name

    with pytest.raises(BlkfleetError, match="invalid device name"):
        check_name(name)


def test_work_dir_makes_the_path_and_follows_only_our_links(tmp_path):
    made = files.work_dir(tmp_path / "project" / "results" / "traces")
    assert os.path.isdir(made) and made == str(tmp_path / "project" / "results" / "traces")
    elsewhere = tmp_path / "big"
    elsewhere.mkdir()
    (tmp_path / "project" / "linked").symlink_to(elsewhere)
    assert files.work_dir(tmp_path / "project" / "linked" / "r") == str(elsewhere / "r")
    assert os.path.isdir(elsewhere / "r")


def test_work_dir_refuses_a_planted_link_and_makes_nothing_through_it(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    victim = tmp_path / "victim"
    victim.mkdir()
    planted = shared / "results"
    planted.symlink_to(victim)
    os.lchown(planted, NOBODY, NOBODY)
    with pytest.raises(BlkfleetError, match=f"the link {planted} is owned by uid {NOBODY}"):
        files.work_dir(planted / "traces")
    with pytest.raises(BlkfleetError, match="owned by uid"):
        files.work_dir(planted / "traces", create=False)
    assert os.listdir(victim) == []


@pytest.mark.parametrize("case, problem", [
    ("sticky", "others can write to"), ("theirs", f"owned by uid {NOBODY}"), ("group", "others can write to"),
    ("file", "is not a directory")])
def test_work_dir_refusals(tmp_path, case, problem):
    here = tmp_path / case
    if case == "file":
        here.write_text("")
    else:
        here.mkdir()
    if case == "sticky":
        os.chmod(here, 0o1777)  # above a directory of ours it counts, as the directory itself it does not
        assert files.work_dir(here / "mine")
        with pytest.raises(BlkfleetError, match=problem):
            files.work_dir(here)
        return
    if case == "theirs":
        os.chown(here, NOBODY, NOBODY)
    if case == "group":
        os.chown(here, 0, NOBODY)
        os.chmod(here, 0o775)
    with pytest.raises(BlkfleetError, match=problem):
        files.work_dir(here / "results")
    assert not os.path.lexists(here / "results")


def test_work_dir_check_mode_makes_nothing(tmp_path):
    assert files.work_dir(tmp_path / "a" / "b", create=False) == str(tmp_path / "a" / "b")
    assert not os.path.exists(tmp_path / "a")


def test_trusted_dir_refuses_a_planted_link_above_it_and_makes_nothing_through_it(tmp_path):
    """A capture, extraction or publication directory named under /tmp: a link another user made on the way is
    refused (followed once checked, it could be pointed into their own directory), and nothing is made through
    it; a link of root's is followed."""
    shared, victim = tmp_path / "shared", tmp_path / "victim"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (victim / "old").mkdir(parents=True)
    planted = shared / "out"
    planted.symlink_to(victim)
    os.lchown(planted, NOBODY, NOBODY)
    for path in (planted / "new", planted / "new" / "deeper", planted / "old"):
        with pytest.raises(BlkfleetError, match=f"the link {planted} above it is owned by uid {NOBODY}"):
            files.trusted_dir(path)
    assert files.untrusted_reason(planted / "old") == f"the link {planted} above it is owned by uid {NOBODY}"
    assert os.listdir(victim) == ["old"]
    os.lchown(planted, 0, 0)
    assert files.trusted_dir(planted / "new") == str(planted / "new") and (victim / "new").is_dir()


@pytest.fixture
def dotdot(tmp_path):
    """``shared/link/../out``: by text ``shared/out``, a directory of root's; for the kernel, which follows the link
    uid 65534 planted in the sticky ``shared`` first, ``theirs/out``, in a directory of theirs."""
    shared, theirs = tmp_path / "shared", tmp_path / "theirs"
    for d in (shared / "out", theirs / "sub", theirs / "out"):
        d.mkdir(parents=True)
    os.chmod(shared, 0o1777)
    os.chown(theirs, NOBODY, NOBODY)
    (shared / "link").symlink_to(theirs / "sub")
    os.lchown(shared / "link", NOBODY, NOBODY)
    return f"{shared}/link/../out", theirs / "out", shared


@pytest.mark.parametrize("check", [lambda p: files.trusted_dir(p, create=False), files.trusted_dir,
                                   files.work_dir, lambda p: files.work_dir(p, create=False)])
def test_a_dotdot_after_their_link_is_judged_where_the_kernel_goes(dotdot, check):
    path, theirs, shared = dotdot
    with pytest.raises(BlkfleetError, match=f"the link {shared}/link .*owned by uid {NOBODY}"):
        check(path)
    assert files.untrusted_reason(path) and os.listdir(theirs) == []
    assert files.untrusted_reason(shared / "out") is None  # where the text says: trusted


def test_an_atomic_file_is_made_beside_where_the_kernel_puts_it(dotdot):
    """No check here (callers check its directory first): its new file goes beside the path, so that the rename
    cannot move it elsewhere."""
    path, theirs, shared = dotdot
    os.rmdir(shared / "out")  # where the text points: the new file must not be made there
    files.atomic_write(f"{path}/f.json", "{}")
    assert os.listdir(theirs) == ["f.json"] and not os.path.exists(shared / "out")


def test_a_dotdot_through_our_own_directories_is_fine(tmp_path, monkeypatch):
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert os.path.isdir(files.trusted_dir("../new"))
    assert files.work_dir("../../made") == str(tmp_path / "made")
    assert files.untrusted_reason("..") is None


def test_atomic_file_that_cannot_be_made_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError) as raised:
        files.atomic_write(tmp_path / "nope" / "f.json", "{}")
    assert raised.value.filename == str(tmp_path / "nope" / "f.json")
