#!/usr/bin/env bash
# The blkfleet demo on this machine (Debian 12, root): installs what it needs, then runs playbooks/demo.yml —
# two loop devices on tmpfs, a fio workload captured on the first, recorded and bundled on the controller,
# pushed and replayed onto the second; the results land in results/demo/. The loop devices are always removed.
set -euo pipefail
cd "$(dirname "$0")"
. ./bootstrap.sh

install_debs fio python3-venv util-linux
mount_tracefs
make_venv "[ansible]"
.venv/bin/ansible-playbook playbooks/demo.yml "$@"
echo "results: $(pwd)/results/demo/results.json"
