#!/usr/bin/env bash
# Remove an installed CaseIterator: what install.sh recorded in share/install-manifest.txt
# (command link, desktop entry, icons, kiosk autostart entry), then the install folder itself.
#
#   PREFIX/uninstall.sh [--quiet]
#
# Run the copy inside the install folder (/opt/caseiterator/uninstall.sh, or
# ~/.local/opt/caseiterator/uninstall.sh for a --user install). A listed file that is no
# longer what install.sh put there (a link pointing elsewhere, an entry of another install) is
# left alone and reported. The readers' data (~/.local/share/CaseIterator: progress, results
# waiting to be sent, caches) and the site settings (/etc/caseiterator) are not touched.
set -euo pipefail

prefix="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
quiet=0
[[ "${1:-}" == "--quiet" ]] && quiet=1
say() { ((quiet)) || echo "[uninstall] $*"; }
die() {
    echo "[uninstall] ERROR: $*" >&2
    exit 1
}

manifest="$prefix/share/install-manifest.txt"
[[ -f $manifest && -x $prefix/caseiterator && -d $prefix/_internal ]] ||
    die "$prefix is not an installed CaseIterator (no share/install-manifest.txt)"

mapfile -t entries <"$manifest"
for path in "${entries[@]}"; do
    [[ -n $path && $path != */ ]] || continue
    if [[ -L $path ]]; then
        if [[ "$(readlink "$path")" == "$prefix/caseiterator" ]]; then
            rm -f "$path" && say "removed $path"
        else
            say "left $path: it points elsewhere now"
        fi
    elif [[ -f $path ]]; then
        case "$path" in
        *.desktop)
            if grep -qxF "X-CaseIterator-Prefix=$prefix" "$path"; then
                rm -f "$path" && say "removed $path"
            else
                say "left $path: it belongs to another install"
            fi
            ;;
        *) rm -f "$path" && say "removed $path" ;;
        esac
    fi
done

# Refresh the menus where the tools exist (optional).
if command -v update-desktop-database >/dev/null; then
    while IFS= read -r path; do
        [[ $path == */applications/caseiterator.desktop ]] &&
            { update-desktop-database -q "$(dirname "$path")" 2>/dev/null || true; }
    done < <(printf '%s\n' "${entries[@]}")
fi

# Then the install folder (this script included: bash goes on reading its open file).
case "$prefix" in
/ | /opt | /usr | /usr/local | "${HOME:-}") die "refusing to remove $prefix" ;;
esac
rm -rf "$prefix"
say "removed $prefix"

# Folders install.sh made, deepest first, when nothing else was put in them since.
while IFS= read -r path; do
    [[ -d $path ]] || continue
    if rmdir "$path" 2>/dev/null; then
        say "removed ${path%/}"
    else
        say "left ${path%/}: not empty"
    fi
done < <(printf '%s\n' "${entries[@]}" | grep '/$' | sort -r)
