#!/usr/bin/env bash
# Ansible test layers of blkfleet, without Docker:
#   sanity    ansible-test sanity --venv --python 3.11 (from the collection directory)
#   units     ansible-test units --venv --python 3.11
#   lint      ansible-lint, production profile, offline (from the repository root, .ansible-lint)
#   molecule  molecule test (scenario default: network-namespace hosts with their own sshd, capture -> record ->
#             push -> synchronized replay on loop devices; needs root, iproute2, openssh-server, fio), then
#             tests/ansible/molecule_leftovers.py: fails (after removing them) if namespaces, sshd state, loop
#             devices or /dev/shm/blkfleet-mol are left
# Usage: tests/ansible/run_ansible_tests.sh [sanity] [units] [lint] [molecule]   (default: all four)
# Needs the repository's .venv with ansible-core, ansible-lint and molecule (tests/run creates it), or VENV=/path.
# The first run downloads ansible-test's pinned sanity/units requirements from PyPI into ~/.ansible/test/venv.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${VENV:-$repo/.venv}"
collection="$repo/collections/ansible_collections/blkfleet/core"
py="$venv/bin/python"
layers=("$@")
[ ${#layers[@]} -gt 0 ] || layers=(sanity units lint molecule)
export PATH="$venv/bin:$PATH"
export ANSIBLE_NOCOLOR=1

# ansible-test bootstraps pip in each venv it makes from a get-pip script it downloads from a host that is not
# reachable here; put the local stand-in where it looks first, named for the pip version this ansible-test pins.
pip_version="$("$py" - <<'PY'
import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version='3.11'))['pip'])
PY
)"
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
mkdir -p "$(dirname "$cache")"
if [ ! -f "$cache" ] || grep -q BLKFLEET-GET-PIP-STANDIN "$cache"; then
    cp "$repo/tests/ansible/get_pip_standin.py" "$cache"
fi

for layer in "${layers[@]}"; do
    start=$(date +%s)
    case "$layer" in
        sanity)
            (cd "$collection" && ansible-test sanity --venv --python 3.11 --color no) ;;
        units)
            (cd "$collection" && ansible-test units --venv --python 3.11 --color no) ;;
        lint)
            (cd "$repo" && ansible-lint --offline --nocolor) ;;
        molecule)
            # molecule calls ansible-playbook and ansible-config through PATH: the venv is first on it above.
            # Its destroy (also run after a failure) removes the namespace hosts, their sshd and the loop
            # devices; check that nothing is left, and remove leftovers (then fail) if molecule itself died.
            rc=0
            (cd "$repo" && VIRTUAL_ENV="$venv" molecule test) || rc=$?
            if ! "$py" "$repo/tests/ansible/molecule_leftovers.py" --clean; then
                [ "$rc" -ne 0 ] || rc=1
            fi
            [ "$rc" -eq 0 ] || exit "$rc" ;;
        *)
            echo "run_ansible_tests.sh: unknown layer '$layer' (sanity, units, lint, molecule)" >&2
            exit 2 ;;
    esac
    echo "run_ansible_tests.sh: $layer passed in $(( $(date +%s) - start )) s"
done
