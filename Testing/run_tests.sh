#!/usr/bin/env bash
# Run CaseIterator's checks and tests: ruff (lint + format), import-linter, then pytest over
# Testing/ with a real Orthanc, inside a private network namespace that has only loopback.
#
#   Testing/run_tests.sh [PYTEST ARGS...]      e.g.  Testing/run_tests.sh -k orthanc -x
#
# Environment:
#   CASEITERATOR_PYTHON     the interpreter (default: .venv/bin/python; ./bootstrap.sh makes it)
#   CASEITERATOR_SKIP_LINT  1 = skip ruff and import-linter (quick local pytest runs)
#
# Needs Orthanc installed (./bootstrap.sh test installs it): the orthanc tests FAIL without it
# (CASEITERATOR_REQUIRE_ORTHANC=1). Exit status: 0 all good; pytest's own status when pytest
# failed; 1 when a lint/contract check failed or pytest collected no test (its status 5).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="${CASEITERATOR_PYTHON:-$ROOT/.venv/bin/python}"
if [[ ! -x "$PY" ]]; then
    echo "run_tests.sh: no Python at $PY. Run ./bootstrap.sh test (it creates .venv)." >&2
    exit 1
fi

export QT_QPA_PLATFORM=offscreen
export VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow
export CASEITERATOR_REQUIRE_ORTHANC=1

failed=()
status=0

step() {
    local name="$1"
    shift
    echo "==> $name: $*"
    if "$@"; then
        echo "==> $name: ok"
    else
        echo "==> $name: FAILED" >&2
        failed+=("$name")
    fi
}

if [[ "${CASEITERATOR_SKIP_LINT:-0}" != "1" ]]; then
    step "ruff check" "$PY" -m ruff check .
    step "ruff format" "$PY" -m ruff format --check .
    step "import contracts" "$PY" -c \
        'import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())'
else
    echo "==> lint skipped (CASEITERATOR_SKIP_LINT=1)"
fi

# pytest inside a network namespace with loopback only: Orthanc 1.10 binds all interfaces
# whatever its configuration says, so it must not run in the machine's own network.
pytest_cmd=("$PY" -m pytest "$@")
# shellcheck disable=SC2016  # $@ is expanded by the inner bash
inner='ip link set lo up && exec "$@"'

if [[ "$(id -u)" == "0" ]] && unshare -n true 2>/dev/null; then
    echo "==> pytest (private network namespace, loopback only): ${pytest_cmd[*]}"
    unshare -n bash -c "$inner" bash "${pytest_cmd[@]}"
    rc=$?
elif unshare -rn true 2>/dev/null; then
    echo "==> pytest (user + network namespace, loopback only): ${pytest_cmd[*]}"
    unshare -rn bash -c "$inner" bash "${pytest_cmd[@]}"
    rc=$?
else
    cat >&2 <<'EOF'
############################################################################################
# WARNING: cannot create a private network namespace (not root, and user namespaces are   #
# not allowed here). The tests run in the machine's own network: the Orthanc servers they #
# start listen on ALL interfaces (Orthanc 1.10 ignores its bind settings; remote access   #
# is refused by its configuration). Run as root, or enable unprivileged user namespaces.  #
############################################################################################
EOF
    echo "==> pytest (NO network namespace): ${pytest_cmd[*]}"
    "${pytest_cmd[@]}"
    rc=$?
fi

if [[ $rc -eq 5 ]]; then
    echo "==> pytest: FAILED: no tests were collected (pytest exit code 5)" >&2
    failed+=("pytest (no tests collected)")
elif [[ $rc -ne 0 ]]; then
    echo "==> pytest: FAILED (exit code $rc)" >&2
    failed+=("pytest")
    status=$rc
else
    echo "==> pytest: ok"
fi

if ((${#failed[@]})); then
    printf '==> FAILED: %s\n' "${failed[@]}" >&2
    exit $((status ? status : 1))
fi
echo "==> all checks and tests passed"
