"""The distributions a user installs, built for real: the sdist and wheel (``python -m build``), the collection
tarball (``ansible-galaxy collection build``) installed outside the checkout, and the execution environment's
build context (``ansible-builder create``)."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest
import yaml

from helpers import REPO
from helpers.adhoc import ansible_bin
from helpers.distributions import COLLECTION, build

pytestmark = [pytest.mark.slow]

RANDMIX = os.path.join(REPO, "tests", "data", "randmix")


def license_text():
    with open(os.path.join(REPO, "LICENSE"), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The sdist, the wheel and the collection tarball, built from this checkout."""
    return build(tmp_path_factory.mktemp("dist"))


def test_wheel_ships_the_licence_man_pages_and_completion(dist):
    with zipfile.ZipFile(dist["wheel"]) as whl:
        names = set(whl.namelist())
        assert whl.read("blkfleet-0.1.0.dist-info/licenses/LICENSE") == license_text()
        meta = whl.read("blkfleet-0.1.0.dist-info/METADATA").decode()
    data = "blkfleet-0.1.0.data/data/share/"
    assert {data + "man/man1/blkfleet.1", data + "man/man1/blkfleet-replay.1",
            data + "bash-completion/completions/blkfleet", data + "zsh/site-functions/_blkfleet"} <= names
    assert "License-Expression: GPL-3.0-or-later" in meta and "License-File: LICENSE" in meta
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert requires and all("extra ==" in line for line in requires), requires  # the engine needs nothing
    assert 'Requires-Dist: ansible-core<2.22,>=2.19; extra == "ansible"' in meta
    assert not [line for line in requires if "jsonschema" in line or "pyyaml" in line.lower()
                if 'extra == "dev"' not in line]
    assert "example.invalid" not in meta


def test_sdist_ships_the_licence_and_the_generator(dist):
    with tarfile.open(dist["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        assert tar.extractfile("blkfleet-0.1.0/LICENSE").read() == license_text()
    assert {"setup.py", "engine/blkfleet/clidocs.py", "pyproject.toml"} <= names


def test_ansible_extra_states_its_python_requirement(dist, tmp_path):
    """The engine installs on Python 3.9 with nothing else; the [ansible] extra is refused there by pip, naming
    ansible-core and the Python it needs (the package used to install without ansible-core and say nothing)."""
    def download(requirement):
        return subprocess.run([sys.executable, "-m", "pip", "download", "--python-version", "3.9",
                               "--only-binary=:all:", "-d", str(tmp_path), requirement], capture_output=True,
                              text=True, timeout=300)

    run = download(dist["wheel"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert os.listdir(tmp_path) == [os.path.basename(dist["wheel"])]
    run = download(f"{dist['wheel']}[ansible]")
    assert run.returncode != 0
    assert "ansible-core" in run.stderr and "Requires-Python >=3.11" in run.stderr, run.stderr[-2000:]


def test_collection_tarball(dist):
    with tarfile.open(dist["collection"]) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("MANIFEST.json"))["collection_info"]
        assert tar.extractfile("LICENSE").read() == license_text()
        changelog = yaml.safe_load(tar.extractfile("changelogs/changelog.yaml"))
    assert manifest["license_file"] == "LICENSE"
    assert "example.invalid" not in json.dumps(manifest)
    assert ".gitignore" not in names and not [n for n in names if n.startswith("tests/output")]
    assert [n for n in names if n.startswith("changelogs/fragments/") and n.endswith(".yml")] == []
    release = changelog["releases"]["0.1.0"]
    modules = sorted(n[:-3] for n in os.listdir(os.path.join(COLLECTION, "plugins", "modules")) if n.endswith(".py"))
    assert sorted(m["name"] for m in release["modules"]) == modules
    roles = sorted(os.listdir(os.path.join(COLLECTION, "roles")))
    assert sorted(r["name"] for r in release["objects"]["role"]) == roles
    assert "CHANGELOG.rst" in names


@pytest.fixture(scope="module")
def outside(dist, tmp_path_factory):
    """A fresh venv outside the checkout with the wheel and its [ansible] extra, and the collection installed from
    its tarball into a collections directory of its own."""
    where = tmp_path_factory.mktemp("outside")
    venv = where / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True, timeout=120)
    run = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{dist['wheel']}[ansible]"],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    collections = where / "collections"
    env = {"PATH": f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(where), "LANG": "C.UTF-8",
           "ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "False", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False"}
    run = subprocess.run([str(venv / "bin" / "ansible-galaxy"), "collection", "install", "-p", str(collections),
                          dist["collection"]], capture_output=True, text=True, cwd=where, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return {"where": where, "venv": venv, "env": env}


def record_adhoc(outside, name):
    replay = outside["where"] / name
    args = json.dumps({"trace_dir": RANDMIX, "replay_dir": str(replay), "bundle": str(replay) + ".bundle"})
    return subprocess.run([str(outside["venv"] / "bin" / "ansible"), "localhost", "-c", "local",
                           "-m", "blkfleet.core.btrecord", "-a", args], capture_output=True, text=True,
                          cwd=outside["where"], env=outside["env"], timeout=300), replay


def test_collection_works_installed_outside_the_checkout(outside):
    run = subprocess.run([str(outside["venv"] / "bin" / "ansible-doc"), "blkfleet.core.btreplay"],
                         capture_output=True, text=True, cwd=outside["where"], env=outside["env"], timeout=120)
    assert run.returncode == 0 and "acc_factor" in run.stdout, run.stderr
    run, replay = record_adhoc(outside, "replay")
    assert run.returncode == 0, run.stdout + run.stderr
    assert os.path.getsize(str(replay) + ".bundle") > 0 and (replay / "loop1.replay.0").exists()
    assert (outside["venv"] / "share" / "man" / "man1" / "blkfleet-record.1").exists()
    if shutil.which("man"):  # man-db looks beside each PATH directory: the venv's share/man
        run = subprocess.run(["man", "-w", "blkfleet-record"], capture_output=True, text=True, env=outside["env"])
        assert run.stdout.strip() == str(outside["venv"] / "share" / "man" / "man1" / "blkfleet-record.1"), run
    assert (outside["venv"] / "share" / "bash-completion" / "completions" / "blkfleet").exists()


def test_action_plugins_name_the_missing_package(outside):
    """Without the blkfleet package next to Ansible, the action plugins say what is missing and how to get it."""
    run = subprocess.run([str(outside["venv"] / "bin" / "pip"), "uninstall", "-y", "-q", "blkfleet"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    run, _ = record_adhoc(outside, "replay-missing")
    assert run.returncode != 0
    assert "the Python package blkfleet is missing on the controller" in run.stdout, run.stdout + run.stderr
    assert "pip install blkfleet" in run.stdout


def test_execution_environment_build_context(dist, tmp_path):
    """``ansible-builder create`` makes the build context of execution-environment.yml: the wheel and the collection
    in it, installed by its last steps (building the image itself needs podman or docker and a registry)."""
    builder = ansible_bin("ansible-builder")
    assert builder, "ansible-builder is not installed (the dev extra has it)"
    shutil.copy(os.path.join(REPO, "execution-environment.yml"), tmp_path)
    (tmp_path / "dist").mkdir()
    for kind in ("wheel", "collection"):
        shutil.copy(dist[kind], tmp_path / "dist")
    run = subprocess.run([builder, "create", "-f", "execution-environment.yml", "-c", "context"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    context = tmp_path / "context"
    assert sorted(os.listdir(context / "_build" / "blkfleet")) == sorted(
        os.path.basename(dist[k]) for k in ("wheel", "collection"))
    recipe = next(context / n for n in ("Containerfile", "Dockerfile") if (context / n).exists()).read_text()
    assert "pip install --no-cache-dir /tmp/blkfleet/blkfleet-*.whl" in recipe
    assert "ansible-galaxy collection install -p /usr/share/ansible/collections" in recipe
    assert 'ANSIBLE_INSTALL_REFS="ansible-core>=2.19,<2.22 ansible-runner"' in recipe
