"""Damaged or hostile bundles: one clear line naming the problem, exit 2, nothing written outside (or at all)."""

import copy
import json
import os
import tarfile

import pytest

from blkfleet.bundle import manifest as mf
from blkfleet.cli import main
from helpers.bundles import members, write_tar


def run(capsys, *argv):
    code = main(list(map(str, argv)))
    err = capsys.readouterr().err
    return code, err


def check_refused(capsys, path, tmp_path, message):
    """verify, extract (leaving nothing) and, unless the manifest is the problem, info all report it."""
    code, err = run(capsys, "bundle", "verify", path)
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and err.startswith("blkfleet: "), err
    dest = tmp_path / "dest"
    code, err = run(capsys, "bundle", "extract", path, dest)
    assert code == 2 and message in err, err
    assert not dest.exists() or os.listdir(dest) == []
    return err


def flip_byte(bundle_file, tmp_path, member, at):
    data = bytearray(bundle_file.read_bytes())
    with tarfile.open(bundle_file) as tar:
        offset = tar.getmember(member).offset_data
    data[offset + at] ^= 0x40
    out = tmp_path / "tampered.bundle"
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("member", ["replay/loop1.replay.0", "engine.pyz"])
def test_tampered_member(bundle_file, tmp_path, capsys, member):
    bad = flip_byte(bundle_file, tmp_path, member, 1000)
    err = check_refused(capsys, bad, tmp_path, f"member '{member}': sha256 mismatch")
    assert str(bad) in err


def test_tampered_manifest(bundle_file, tmp_path, capsys):
    entries = members(bundle_file)
    m = json.loads(entries[0][1])
    m["files"][0]["ios"] += 1  # still schema-valid, but no longer what the id says
    entries[0] = (entries[0][0], mf.encode(m))
    bad = write_tar(tmp_path / "b", entries)
    check_refused(capsys, bad, tmp_path, "bundle_id does not match the manifest's content")
    code, err = run(capsys, "bundle", "info", bad)
    assert code == 2 and "bundle_id does not match" in err


def test_manifest_breaking_the_schema(bundle_file, tmp_path, capsys):
    entries = members(bundle_file)
    m = json.loads(entries[0][1])
    m["files"][1]["sha256"] = "XYZ"
    m["bundle_id"] = mf.bundle_id(m)
    entries[0] = (entries[0][0], mf.encode(m))
    bad = write_tar(tmp_path / "b", entries)
    check_refused(capsys, bad, tmp_path, "invalid manifest: $.files[1].sha256: \"XYZ\" does not match")


def test_newer_format_version(bundle_file, tmp_path, capsys):
    entries = members(bundle_file)
    m = json.loads(entries[0][1])
    m["format_version"] = 4
    m["bundle_id"] = mf.bundle_id(m)
    entries[0] = (entries[0][0], mf.encode(m))
    check_refused(capsys, write_tar(tmp_path / "b", entries), tmp_path,
                  "bundle format version 4 is newer than this engine's (3)")


@pytest.mark.parametrize("keep", [100, 700, 3000, 200_000, -10_240 - 600, -10_240 - 1])
def test_truncated(bundle_file, tmp_path, capsys, keep):
    data = bundle_file.read_bytes()
    bad = tmp_path / "trunc.bundle"
    bad.write_bytes(data[:keep])
    code, err = run(capsys, "bundle", "verify", bad)
    assert code == 2 and err.count("\n") == 1
    assert any(w in err for w in ("truncated", "missing", "not a blkfleet bundle")), err
    dest = tmp_path / "d"
    assert main(["bundle", "extract", str(bad), str(dest)]) == 2
    assert not dest.exists() or os.listdir(dest) == []


def test_truncated_inside_a_member(bundle_file, tmp_path, capsys):
    data = bundle_file.read_bytes()
    with tarfile.open(bundle_file) as tar:
        member = tar.getmember("replay/loop1.replay.0")
    bad = tmp_path / "t.bundle"
    bad.write_bytes(data[:member.offset_data + 5000])
    check_refused(capsys, bad, tmp_path, "member 'replay/loop1.replay.0' is truncated")


@pytest.mark.parametrize("name", ["../evil", "/tmp/evil", "replay/../../evil", "replay//x", "./manifest.json"])
def test_path_traversal(bundle_file, tmp_path, capsys, name):
    entries = members(bundle_file)
    evil = tarfile.TarInfo(name)
    entries.insert(2, (evil, b"pwned"))
    bad = write_tar(tmp_path / "b", entries)
    work = tmp_path / "w"
    work.mkdir()
    err = check_refused(capsys, bad, work, f"member {name!r} has an unsafe path")
    assert "refused" in err
    assert not (tmp_path / "evil").exists() and not os.path.exists("/tmp/evil")


@pytest.mark.parametrize("kind, word", [(tarfile.SYMTYPE, "a symbolic link"), (tarfile.LNKTYPE, "a hard link"),
                                        (tarfile.DIRTYPE, "a directory"), (tarfile.FIFOTYPE, "a FIFO")])
def test_links_and_special_members(bundle_file, tmp_path, capsys, kind, word):
    entries = members(bundle_file)
    info = tarfile.TarInfo("replay/loop1.replay.1")
    info.type = kind
    info.linkname = "/etc/passwd"
    entries[3] = (info, b"")
    bad = write_tar(tmp_path / "b", entries)
    check_refused(capsys, bad, tmp_path, f"member 'replay/loop1.replay.1' is {word}: only regular files")


def test_unlisted_duplicate_and_missing_members(bundle_file, tmp_path, capsys):
    entries = members(bundle_file)
    extra = copy.copy(entries[2][0])
    extra.name = "replay/loop9.replay.0"
    bad = write_tar(tmp_path / "a", entries + [(extra, entries[2][1])])
    check_refused(capsys, bad, tmp_path, "member 'replay/loop9.replay.0' is not listed in the manifest")
    bad = write_tar(tmp_path / "b", entries + [entries[2]])
    check_refused(capsys, bad, tmp_path, "member 'replay/loop1.replay.0' appears twice")
    bad = write_tar(tmp_path / "c", entries[:3])
    check_refused(capsys, bad, tmp_path, "member 'replay/loop1.replay.1' is missing")


def test_member_size_differs_from_manifest(bundle_file, tmp_path, capsys):
    entries = members(bundle_file)
    info, data = entries[3]
    entries[3] = (info, data + b"\0" * 512)
    bad = write_tar(tmp_path / "b", entries)
    check_refused(capsys, bad, tmp_path, f"member 'replay/loop1.replay.1' holds {len(data) + 512} bytes, the manifest "
                  f"says {len(data)}")


def test_missing_manifest(bundle_file, tmp_path, capsys):
    entries = members(bundle_file)
    bad = write_tar(tmp_path / "a", entries[1:])
    err = check_refused(capsys, bad, tmp_path, "not a blkfleet bundle (no manifest.json first; first member is "
                        "'engine.pyz')")
    code, err = run(capsys, "bundle", "info", bad)
    assert code == 2 and "no manifest.json first" in err
    empty = write_tar(tmp_path / "empty.tar", [])
    check_refused(capsys, empty, tmp_path, "not a blkfleet bundle (no manifest.json: the archive is empty)")


@pytest.mark.parametrize("content, message", [
    (b"", "not a blkfleet bundle (empty file)"),
    (b"PK\x03\x04" + b"\0" * 2000, "not an uncompressed tar archive"),
    (b"{\"format\": \"blkfleet-bundle\"}\n", "not an uncompressed tar archive"),
])
def test_not_a_bundle(tmp_path, capsys, content, message):
    bad = tmp_path / "x.bundle"
    bad.write_bytes(content)
    check_refused(capsys, bad, tmp_path, message)


def test_manifest_not_json(bundle_file, tmp_path, capsys):
    entries = members(bundle_file)
    entries[0] = (entries[0][0], b"{not json")
    check_refused(capsys, write_tar(tmp_path / "b", entries), tmp_path, "manifest.json is not valid JSON")


def test_missing_file(tmp_path, capsys):
    code, err = run(capsys, "bundle", "verify", tmp_path / "nope")
    assert code == 2 and "cannot open bundle" in err


def test_extract_refuses_a_symlinked_replay_dir(bundle_file, tmp_path, capsys):
    dest = tmp_path / "d"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    # a destination already holding this bundle's manifest (so it is accepted) but replay/ is a link elsewhere
    (dest / "manifest.json").write_bytes(members(bundle_file)[0][1])
    (dest / "replay").symlink_to(outside)
    code, err = run(capsys, "bundle", "extract", bundle_file, dest)
    assert code == 2 and "exists and is not a directory" in err
    assert os.listdir(outside) == []
