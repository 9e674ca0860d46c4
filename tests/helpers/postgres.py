"""A throwaway PostgreSQL server for the results-store tests: a fresh cluster (Debian's postgresql package:
initdb and pg_ctl) in a private temporary directory, listening only on a unix socket there (no TCP), run as
``nobody`` when the tests run as root (the server refuses root), stopped and removed after, even on failure."""

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid

import pytest


def pg_bin():
    """The newest installed server's bin directory, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


def skip_reason():
    if pg_bin() is None:
        return "PostgreSQL server not installed (Debian: apt-get install -y postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg 3 not installed (pip install -e '.[postgresql]')"
    return None


@contextlib.contextmanager
def cluster():
    """Yield the URL of the cluster's ``postgres`` database (user ``blkfleet``, trust on its private socket)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    bindir = pg_bin()
    home = tempfile.mkdtemp(prefix="blkfleet-pg-")  # mode 0700: only its owner (and root) reach the socket
    owner = {}
    if os.geteuid() == 0:
        user = pwd.getpwnam("nobody")
        os.chown(home, user.pw_uid, user.pw_gid)
        owner = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    data = os.path.join(home, "data")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LC_ALL": "C.UTF-8"}

    def pg(*argv, check=True):
        return subprocess.run([os.path.join(bindir, argv[0]), *argv[1:]], env=env, cwd=home, capture_output=True,
                              text=True, timeout=120, check=check, **owner)

    started = False
    try:
        pg("initdb", "-D", data, "-U", "blkfleet", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
        options = f"-c listen_addresses='' -c unix_socket_directories={home} -c fsync=off -c max_connections=60"
        started = True
        pg("pg_ctl", "-D", data, "-o", options, "-l", os.path.join(home, "server.log"), "-w", "-t", "60", "start")
        yield f"postgresql://blkfleet@/postgres?host={home}"
    finally:
        if started:
            pg("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(home, ignore_errors=True)


def fresh_database(server_url):
    """A new empty database on the server; its URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.replace("/postgres?", f"/{name}?")


@pytest.fixture(scope="session")
def postgres_server():
    with cluster() as url:
        yield url


@pytest.fixture
def postgres_db(postgres_server):
    """The URL of a new, empty database for one test."""
    return fresh_database(postgres_server)
