# Shared set-up for ./demo.sh and tests/run (sourced, not run): Debian packages and the project's venv.
# Debian 12, as root; only the package registries are needed.

# Install the Debian packages that are missing.
install_debs() {
    local need=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    [ ${#need[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "blkfleet: missing Debian packages: ${need[*]} (run as root to install them)" >&2
        return 2
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
}

# Make .venv with Debian's Python and install the project into it (with the given extras, e.g. "[dev]").
make_venv() {
    local extras="${1:-}"
    [ -x .venv/bin/python ] || /usr/bin/python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e ".${extras}"
}

# tracefs is where the capture backend and the tests look for the kernel's tracers.
mount_tracefs() {
    if [ "$(id -u)" -eq 0 ] && ! mountpoint -q /sys/kernel/tracing; then
        mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
    fi
}
