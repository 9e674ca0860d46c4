"""Run a command with its stderr on a pseudo-terminal, as a user at a terminal sees it."""

import os
import subprocess
import threading


def run_on_terminal(argv, cwd, env=None):
    """Run ``argv`` with stderr on a pseudo-terminal; returns (exit code, what the terminal got, stdout)."""
    master, slave = os.openpty()
    got = []

    def drain():
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not chunk:
                return
            got.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        run = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env,
                             timeout=300)
    finally:
        os.close(slave)
        reader.join(timeout=30)
        os.close(master)
    return run.returncode, b"".join(got).decode(errors="replace"), run.stdout.decode()
