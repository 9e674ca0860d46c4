"""engine.pyz: deterministic, only engine files, runs on Python 3.9 (targets) as on the controller's Python."""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from blkfleet import __version__
from blkfleet.bundle import pack
from blkfleet.bundle.zipapp import SHEBANG, build_engine_pyz, engine_bytes, package_files, with_package_inits
from blkfleet.cli import main
from helpers import DATA
from helpers.bundles import PY39

ENGINE_SRC = Path(__file__).resolve().parents[2] / "engine" / "blkfleet"
needs_py39 = pytest.mark.skipif(not os.access(PY39, os.X_OK),
                                reason=f"Python 3.9 from pyenv is not installed ({PY39} missing)")
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def run(python, *args, cwd=None, timeout=120):
    """Run with a clean environment from a neutral directory, so only the zipapp can provide blkfleet."""
    return subprocess.run([python, *map(str, args)], capture_output=True, text=True, env=CLEAN_ENV,
                          cwd=cwd or "/", timeout=timeout)


@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    path = tmp_path_factory.mktemp("engine") / "engine.pyz"
    build_engine_pyz(str(path))
    return path


def test_deterministic(monkeypatch):
    """Same sources, same bytes, whatever the order or timestamps they are found in.

    Built from one snapshot of the sources: other engineers may edit the shared tree while the tests run.
    """
    files = package_files()
    first = engine_bytes(files)
    assert engine_bytes(list(reversed(files))) == first
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)
    monkeypatch.setattr(time, "localtime", lambda *a: time.gmtime(2_000_000_000))
    assert engine_bytes(files) == first


def test_layout(pyz):
    data = pyz.read_bytes()
    assert data.startswith(SHEBANG) and os.stat(pyz).st_mode & 0o777 == 0o755
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos = z.infolist()
    names = [i.filename for i in infos]
    assert names[0] == "__main__.py" and names[1:] == sorted(names[1:])
    assert all(n.startswith("blkfleet/") for n in names[1:])
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/." in n]
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) and i.compress_type == zipfile.ZIP_STORED for i in infos)
    assert all(i.external_attr >> 16 == 0o100644 for i in infos)
    assert "blkfleet/schemas/manifest.schema.json" in names and "blkfleet/bundle/pack.py" in names
    # every module of the source tree is in, and nothing that is not a module or a schema
    sources = {f"blkfleet/{p.relative_to(ENGINE_SRC).as_posix()}" for p in ENGINE_SRC.rglob("*.py")
               if "__pycache__" not in p.parts}
    schemas = {f"blkfleet/schemas/{p.name}" for p in (ENGINE_SRC / "schemas").glob("*.json")}
    added_inits = {n for n in names if n.endswith("/__init__.py")} - sources
    assert set(names) == {"__main__.py"} | sources | schemas | added_inits


def test_namespace_packages_get_an_init():
    files = [("blkfleet/__init__.py", b""), ("blkfleet/a/x.py", b"x = 1"), ("blkfleet/schemas/s.json", b"{}")]
    assert with_package_inits(files) == sorted(files + [("blkfleet/a/__init__.py", b"")])


def test_engine_cli(tmp_path, capsys):
    out = tmp_path / "e.pyz"
    assert main(["bundle", "engine", "-o", str(out)]) == 0
    assert out.read_bytes().startswith(SHEBANG) and zipfile.is_zipfile(out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() in capsys.readouterr().err


def test_runs_under_this_python(pyz):
    proc = run(sys.executable, pyz, "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"blkfleet {__version__}"
    proc = run(sys.executable, pyz, "replay", "--help")
    assert proc.returncode == 0 and "-W, --write-enable" in proc.stdout


def test_rebuilds_itself_identically(pyz, tmp_path):
    """A zipapp can build the engine from its own contents (controller running engine.pyz)."""
    proc = run(sys.executable, pyz, "bundle", "engine", "-o", tmp_path / "again.pyz")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "again.pyz").read_bytes() == pyz.read_bytes()


@needs_py39
def test_version_under_py39(pyz):
    proc = run(PY39, pyz, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"blkfleet {__version__}"
    assert run(PY39, "-c", "import sys; print(sys.version_info[:2])").stdout.strip() == "(3, 9)"


@needs_py39
def test_every_module_compiles_under_py39(tmp_path):
    proc = run(PY39, "-X", f"pycache_prefix={tmp_path}", "-m", "compileall", "-q", ENGINE_SRC)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_py39
def test_every_module_imports_under_py39_from_the_zipapp(pyz):
    code = (
        "import importlib, zipfile, sys\n"
        "names = [n[:-3].replace('/', '.').replace('.__init__', '') for n in zipfile.ZipFile(sys.argv[1]).namelist()\n"
        "         if n.startswith('blkfleet/') and n.endswith('.py') and not n.endswith('__main__.py')]\n"
        "for n in names: importlib.import_module(n)\n"
        "print(len(names), importlib.import_module('blkfleet').__file__)\n"
    )
    proc = subprocess.run([PY39, "-c", code, str(pyz)], capture_output=True, text=True, cwd="/",
                          env=dict(CLEAN_ENV, PYTHONPATH=str(pyz)), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert str(pyz) in proc.stdout  # imported from the zipapp, not from a source tree


@needs_py39
@pytest.mark.parametrize("compat", [False, True], ids=["native", "compat"])
def test_record_identical_under_py39_and_this_python(pyz, tmp_path, compat):
    outputs = {}
    for tag, python in (("py39", PY39), ("this", sys.executable)):
        out = tmp_path / tag
        out.mkdir()
        args = ["record", "-q", "-d", DATA / "randmix", "-D", out, "--json", out / "rec.json", "loop1"]
        proc = run(python, pyz, *(args + (["--compat"] if compat else [])))
        assert proc.returncode == 0, proc.stderr
        outputs[tag] = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "rec.json"}
        rec = json.loads((out / "rec.json").read_text())
        for f in rec["files"]:
            f["output"] = os.path.basename(f["output"])
        outputs[tag]["rec.json"] = rec
    assert sorted(outputs["py39"]) == ["loop1.replay.0", "loop1.replay.1", "rec.json"]
    assert outputs["py39"] == outputs["this"]


@needs_py39
def test_bundle_verify_extract_under_py39(bundle_file, pyz, tmp_path):
    """What a target does with a pushed bundle: verify, extract, run the extracted engine."""
    proc = run(PY39, pyz, "bundle", "verify", bundle_file, "--json", "-")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["result"]["bundle_id"] == pack.read_manifest(str(bundle_file))["bundle_id"]
    proc = run(PY39, pyz, "bundle", "extract", bundle_file, tmp_path / "x", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    extracted = json.loads(proc.stdout)["result"]
    proc = run(PY39, extracted["engine"], "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"blkfleet {__version__}"
    bad = tmp_path / "bad.bundle"
    data = bytearray(bundle_file.read_bytes())
    with tarfile.open(bundle_file) as tar:
        data[tar.getmember("replay/loop1.replay.1").offset_data + 100] ^= 1
    bad.write_bytes(bytes(data))
    proc = run(PY39, pyz, "bundle", "verify", bad)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "sha256 mismatch" in proc.stderr


@needs_py39
@pytest.mark.root
def test_replay_from_extracted_bundle_under_py39(bundle_file, tmp_path, loopdev):
    """The extracted engine replays the extracted files (reads only) onto a loop device, every IO."""
    dest = tmp_path / "x"
    pack.extract(str(bundle_file), str(dest))
    m = json.loads((dest / "manifest.json").read_text())
    target = loopdev(m["devices"][0]["size"])
    devmap = tmp_path / "map"
    devmap.write_text(f"loop1 {target}\n")
    res = tmp_path / "results.json"
    proc = run(PY39, dest / "engine.pyz", "replay", "-d", dest / m["replay"]["directory"], "-i", m["replay"]["base"],
               "-M", devmap, "-N", "--json", res, *m["replay"]["devices"], timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(res.read_text())
    assert doc["total"]["ios"] == m["totals"]["ios"] == 2000
    assert doc["total"]["errors"]["count"] == 0


@needs_py39
def test_same_bundle_bytes_from_py39_and_this_python(pyz, native_dir, tmp_path):
    """Controllers on different Pythons make the same engine and the same bundle (tar and zip headers)."""
    made = {}
    for tag, python in (("py39", PY39), ("this", sys.executable)):
        proc = run(python, pyz, "bundle", "engine", "-o", tmp_path / f"{tag}.pyz")
        assert proc.returncode == 0, proc.stderr
        proc = run(python, pyz, "bundle", "create", "-d", native_dir, "-o", tmp_path / f"{tag}.bundle",
                   "--trace-dir", DATA / "randmix", "loop1")
        assert proc.returncode == 0, proc.stderr
        made[tag] = (proc.stdout, (tmp_path / f"{tag}.pyz").read_bytes(), (tmp_path / f"{tag}.bundle").read_bytes())
    assert made["py39"] == made["this"]
    assert made["this"][1] == pyz.read_bytes()
