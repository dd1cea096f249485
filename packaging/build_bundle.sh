#!/usr/bin/env bash
# Build the self-contained CaseIterator bundle (PyInstaller one-folder, Linux x86_64) and its
# archive:
#
#   packaging/build_bundle.sh            -> packaging/build/dist/caseiterator-VERSION/
#                                           packaging/build/caseiterator-VERSION-linux-x86_64.tar.gz
#
# Environment:
#   CASEITERATOR_PYTHON        interpreter with the application installed (default .venv/bin/python;
#                              ./bootstrap.sh setup makes it). The `bundle` extra (PyInstaller)
#                              is installed into it when missing.
#   CASEITERATOR_BUNDLE_BUILD  build folder (default packaging/build; never committed)
#   CASEITERATOR_NO_ARCHIVE=1  skip the .tar.gz (CPack makes its own archive)
#   CASEITERATOR_BUNDLE_STRIP=0  keep the symbol tables of VTK's libraries (debugging)
#
# The bundle needs no Python, no virtual environment and no network on the target: only the
# system libraries of a desktop (glibc, EGL/OpenGL, fontconfig, xcb/xkbcommon): see BUILD.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${CASEITERATOR_PYTHON:-$ROOT/.venv/bin/python}"
BUILD="${CASEITERATOR_BUNDLE_BUILD:-$ROOT/packaging/build}"
[[ -x "$PY" ]] || { echo "build_bundle.sh: no Python at $PY (run ./bootstrap.sh setup)" >&2; exit 1; }

say() { echo "[bundle] $*"; }

VERSION="$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
NAME="caseiterator-$VERSION"

# PyInstaller and its hooks: the pins of the `bundle` extra in pyproject.toml.
if ! "$PY" -c 'import PyInstaller, _pyinstaller_hooks_contrib' 2>/dev/null; then
    mapfile -t pins < <("$PY" -c 'import tomllib
for p in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["bundle"]:
    print(p)')
    say "installing ${pins[*]}"
    "$PY" -m pip install --progress-bar off "${pins[@]}"
fi

# The import packages live in Slicer-style module folders (mapped by pyproject.toml); give
# PyInstaller a folder where each is found under its import name.
SRC="$BUILD/src"
rm -rf "$SRC"
mkdir -p "$SRC"
ln -s "$ROOT/Applications/CaseIteratorApp" "$SRC/CaseIteratorApp"
ln -s "$ROOT/Modules/Scripted/CaseIteratorCore/CaseIteratorCoreLib" "$SRC/CaseIteratorCoreLib"
ln -s "$ROOT/Modules/Scripted/CaseReader/CaseReaderLib" "$SRC/CaseReaderLib"
ln -s "$ROOT/Resources" "$SRC/CaseIteratorResources"

say "PyInstaller (takes several minutes: VTK, the Slicer core and Qt are analysed)"
start=$SECONDS
CASEITERATOR_ROOT="$ROOT" CASEITERATOR_SRC="$SRC" QT_QPA_PLATFORM=offscreen \
    "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --workpath "$BUILD/work" --distpath "$BUILD/pyinstaller" \
    "$ROOT/packaging/caseiterator.spec"
say "PyInstaller done in $((SECONDS - start)) s"

# VTK's wheel ships its libraries with their symbol tables (~170 MB of 630): strip them. The
# other wheels' libraries are stripped already or patched by auditwheel (left as they are).
if [[ "${CASEITERATOR_BUNDLE_STRIP:-1}" == "1" ]] && command -v strip >/dev/null; then
    find "$BUILD/pyinstaller/caseiterator/_internal/vtkmodules" -name '*.so' -type f -print0 |
        xargs -0 strip --strip-unneeded
fi

# The distributable folder: the frozen app plus what installs it on a machine.
DIST="$BUILD/dist/$NAME"
rm -rf "$BUILD/dist"
mkdir -p "$BUILD/dist"
mv "$BUILD/pyinstaller/caseiterator" "$DIST"
mkdir -p "$DIST/share"
cp "$ROOT/packaging/install.sh" "$ROOT/packaging/uninstall.sh" "$DIST/"
cp "$ROOT/packaging/caseiterator.desktop.in" "$DIST/share/"
cp "$ROOT/Resources/branding/logo.svg" "$DIST/share/caseiterator.svg"
# A PNG icon for desktops that do not draw SVG icons, rendered from the logo by Qt.
QT_QPA_PLATFORM=offscreen "$PY" "$ROOT/packaging/render_icon.py" \
    "$ROOT/Resources/branding/logo.svg" "$DIST/share/caseiterator.png" 256
echo "$VERSION" >"$DIST/share/VERSION"
chmod 755 "$DIST/install.sh" "$DIST/uninstall.sh"
say "bundle: $DIST ($(du -sh "$DIST" | cut -f1))"

if [[ "${CASEITERATOR_NO_ARCHIVE:-0}" != "1" ]]; then
    ARCHIVE="$BUILD/$NAME-linux-x86_64.tar.gz"
    say "archive: $ARCHIVE"
    tar -C "$BUILD/dist" -czf "$ARCHIVE" "$NAME"
    say "archive: $ARCHIVE ($(du -sh "$ARCHIVE" | cut -f1))"
fi
