#!/usr/bin/env python3
"""After ``molecule test``: report (and with --clean, remove) what the default scenario may have left behind.

The scenario owns: the namespace host set ``mol`` (namespaces, veths, bridge, sshd, /run/blkfleet-netns/mol),
loop devices backed by files under /dev/shm/blkfleet-mol, and that directory. Exit 0 when none of it exists,
1 when something was found (removed first with --clean). Needs root.
"""

import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
NETNS_HOSTS = os.path.join(HERE, "..", "netns", "netns_hosts.py")
SET = "mol"
MOL_DIR = "/dev/shm/blkfleet-mol"


def leftovers():
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    found += [f"namespace {line.split()[0]}" for line in netns if line.startswith(f"{SET}-h")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout.splitlines()
    found += [f"link {line.split(':')[1].strip().split('@')[0]}" for line in links
              if line.split(":")[1].strip().startswith(f"{SET}-")]
    if os.path.exists(f"/run/blkfleet-netns/{SET}"):
        found.append(f"state directory /run/blkfleet-netns/{SET}")
    loops = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                           capture_output=True, text=True).stdout.splitlines()
    found += [f"loop device {line.split()[0]} ({line.split()[1]})" for line in loops
              if len(line.split()) > 1 and line.split()[1].startswith(MOL_DIR + "/")]
    if os.path.exists(MOL_DIR):
        found.append(f"directory {MOL_DIR}")
    return found


def clean():
    subprocess.run([sys.executable, NETNS_HOSTS, "down", "--set", SET], check=False)
    loops = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                           capture_output=True, text=True).stdout.splitlines()
    for line in loops:
        parts = line.split()
        if len(parts) > 1 and parts[1].startswith(MOL_DIR + "/"):
            subprocess.run(["losetup", "--detach", parts[0]], check=False)
    shutil.rmtree(MOL_DIR, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", action="store_true", help="remove what is left")
    args = parser.parse_args()
    found = leftovers()
    if not found:
        return 0
    print("molecule left behind: " + "; ".join(found), file=sys.stderr)
    if args.clean:
        clean()
        rest = leftovers()
        if rest:
            print("could not remove: " + "; ".join(rest), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
