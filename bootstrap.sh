#!/usr/bin/env bash
# CaseIterator set-up: the one entry point behind the README's commands.
#
#   ./bootstrap.sh demo [ARGS...]   install, make the demo batch if missing, open it in the app
#   ./bootstrap.sh test [ARGS...]   install (with Orthanc), run Testing/run_tests.sh [ARGS...]
#   ./bootstrap.sh setup            install only
#   ./bootstrap.sh bundle           install, then build the self-contained bundle (BUILD.md)
#
# Works on a fresh Debian 12 with Python 3.11: installs the Debian packages that are missing
# (with sudo when not root), creates .venv and installs the package editable with its test
# extras. Re-runs skip what is already done (dpkg check, install stamp in .venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
STAMP="$VENV/.caseiterator-install-stamp"

# Qt (xcb and offscreen), EGL/OpenGL for VTK, Xvfb for a virtual display.
RUNTIME_PACKAGES=(
    libegl1 libgl1 libopengl0 libxkbcommon0 libxkbcommon-x11-0 libdbus-1-3 libfontconfig1
    libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
    libxcb-shape0 libxcb-xinerama0 libglib2.0-0 xvfb
)
# A real DICOMweb server, and what the network namespace of the tests needs.
TEST_PACKAGES=(orthanc orthanc-dicomweb iproute2 util-linux openssl)

say() { echo "[bootstrap] $*"; }
die() {
    echo "[bootstrap] ERROR: $*" >&2
    exit 1
}

usage() {
    sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

SUDO=()
if [[ "$(id -u)" != "0" ]]; then
    SUDO=(sudo)
fi

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# Install the Debian packages given that are not installed yet (no apt work when none is).
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        pkg_installed "$pkg" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        say "Debian packages: all installed"
        return 0
    fi
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get here"
    if ((${#SUDO[@]})) && ! command -v sudo >/dev/null; then
        die "not root and no sudo: install as root: apt-get install ${missing[*]}"
    fi
    say "Debian packages to install: ${missing[*]}"
    "${SUDO[@]}" apt-get update -q
    # Debian 13 renamed some libraries (t64); take the new name when the old one is gone.
    local names=()
    for pkg in "${missing[@]}"; do
        if ! apt-cache show "$pkg" >/dev/null 2>&1 && apt-cache show "${pkg}t64" >/dev/null 2>&1; then
            names+=("${pkg}t64")
        else
            names+=("$pkg")
        fi
    done
    # Do not let the packages start their services (the Debian orthanc package would start a
    # system-wide Orthanc on port 8042): the tests start their own servers.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$policy"
        added_policy=1
    fi
    local rc=0
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${names[@]}" || rc=$?
    if ((added_policy)); then
        "${SUDO[@]}" rm -f "$policy"
    fi
    ((rc == 0)) || die "apt-get install failed (exit $rc)"
}

is_py311() {
    "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null
}

find_python() {
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null && is_py311 "$(command -v "$candidate")"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# Debian packages needed for this command, plus python3-venv when venv/ensurepip is missing.
system_packages() {
    local mode="$1" python
    local pkgs=("${RUNTIME_PACKAGES[@]}")
    if [[ "$mode" == test ]]; then
        pkgs+=("${TEST_PACKAGES[@]}")
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        python="$(find_python)" || die "Python 3.11 not found (python3.11 or python3 must be 3.11)"
        if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
            pkgs+=(python3-venv)
            if [[ "$python" == /usr/bin/* ]]; then
                pkgs+=(python3.11-venv)
            fi
        fi
    fi
    apt_install "${pkgs[@]}"
}

make_venv() {
    if [[ -x "$VENV/bin/python" ]] && is_py311 "$VENV/bin/python"; then
        say "virtual environment: $VENV (exists)"
        return 0
    fi
    if [[ -e "$VENV" ]]; then
        say "virtual environment at $VENV is broken or not Python 3.11: recreating it"
        rm -rf "$VENV"
    fi
    local python
    python="$(find_python)" || die "Python 3.11 not found (python3.11 or python3 must be 3.11)"
    say "creating virtual environment: $python -m venv $VENV"
    "$python" -m venv "$VENV"
}

install_package() {
    local want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1) $ROOT"
    if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] &&
        "$VENV/bin/python" -c 'import CaseIteratorCoreLib' 2>/dev/null &&
        [[ -x "$VENV/bin/caseiterator" ]]; then
        say "Python packages: up to date (pyproject.toml unchanged)"
        return 0
    fi
    say "installing: $VENV/bin/python -m pip install -e '.[test]'"
    rm -f "$STAMP"
    "$VENV/bin/python" -m pip install --progress-bar off -e '.[test]'
    echo "$want" >"$STAMP"
}

setup() {
    local mode="$1" start=$SECONDS
    system_packages "$mode"
    make_venv
    install_package
    say "set-up done in $((SECONDS - start)) s"
}

cmd="${1:-}"
if (($#)); then
    shift
fi

case "$cmd" in
demo)
    setup demo
    DATA="${CASEITERATOR_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/CaseIterator}"
    BATCH="$DATA/demo/demo.toml"
    if [[ ! -f "$BATCH" ]]; then
        say "making the demo batch: caseiterator demo-data $DATA/demo"
        "$VENV/bin/caseiterator" demo-data "$DATA/demo"
    fi
    if "$VENV/bin/caseiterator" app --help >/dev/null 2>&1; then
        if [[ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}${QT_QPA_PLATFORM:-}" ]]; then
            say "note: no DISPLAY: run under xvfb-run, or set QT_QPA_PLATFORM=offscreen"
        fi
        say "starting: caseiterator app $BATCH${*:+ $*}"
        exec "$VENV/bin/caseiterator" app "$BATCH" "$@"
    fi
    say "no 'app' command yet: caseiterator validate $BATCH${*:+ $*}"
    exec "$VENV/bin/caseiterator" validate "$BATCH" "$@"
    ;;
test)
    setup test
    say "running: Testing/run_tests.sh${*:+ $*}"
    exec "$ROOT/Testing/run_tests.sh" "$@"
    ;;
setup)
    setup test
    ;;
bundle)
    setup demo
    say "building the bundle: packaging/build_bundle.sh"
    exec "$ROOT/packaging/build_bundle.sh"
    ;;
-h | --help | help)
    usage
    ;;
*)
    usage >&2
    exit 2
    ;;
esac
