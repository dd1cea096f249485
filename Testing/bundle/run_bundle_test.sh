#!/usr/bin/env bash
# The slow end-to-end test of the self-contained bundle (not part of Testing/run_tests.sh).
#
#   Testing/bundle/run_bundle_test.sh [PYTEST ARGS...]
#
# Builds the bundle with packaging/build_bundle.sh (unless CASEITERATOR_BUNDLE_ARCHIVE names
# an existing caseiterator-*.tar.gz), then runs Testing/bundle/test_bundle.py inside a network
# namespace with only loopback (the bundle must start with no network): unpack into an empty
# folder, --help, --bundle-check, demo-data + validate, compressed series, the reading window
# under Xvfb checked on a screenshot, install/uninstall. Needs Xvfb (./bootstrap.sh installs it).
#
# Environment: CASEITERATOR_PYTHON (default .venv/bin/python), CASEITERATOR_BUNDLE_ARCHIVE,
# CASEITERATOR_BUNDLE_BUILD (build folder, default packaging/build).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${CASEITERATOR_PYTHON:-$ROOT/.venv/bin/python}"
export CASEITERATOR_PYTHON="$PY"

if [[ -z "${CASEITERATOR_BUNDLE_ARCHIVE:-}" ]]; then
    export CASEITERATOR_BUNDLE_BUILD="${CASEITERATOR_BUNDLE_BUILD:-$ROOT/packaging/build}"
    "$ROOT/packaging/build_bundle.sh"
    version="$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
    export CASEITERATOR_BUNDLE_ARCHIVE="$CASEITERATOR_BUNDLE_BUILD/caseiterator-$version-linux-x86_64.tar.gz"
fi
echo "==> bundle test on $CASEITERATOR_BUNDLE_ARCHIVE"

export CASEITERATOR_BUNDLE_TEST=1 QT_QPA_PLATFORM=offscreen
pytest_cmd=("$PY" -m pytest Testing/bundle -v -s -p no:cacheprovider "$@")
# shellcheck disable=SC2016  # $@ is expanded by the inner bash
inner='ip link set lo up && exec "$@"'
if [[ "$(id -u)" == "0" ]] && unshare -n true 2>/dev/null; then
    echo "==> pytest (private network namespace, loopback only)"
    exec unshare -n bash -c "$inner" bash "${pytest_cmd[@]}"
elif unshare -rn true 2>/dev/null; then
    echo "==> pytest (user + network namespace, loopback only)"
    exec unshare -rn bash -c "$inner" bash "${pytest_cmd[@]}"
fi
echo "==> pytest (no network namespace available: the network is NOT cut off)" >&2
exec "${pytest_cmd[@]}"
