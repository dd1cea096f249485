#!/usr/bin/env bash
# Install the CaseIterator bundle (the folder this script is in) and register its desktop entry.
#
#   ./install.sh                      system-wide: /opt/caseiterator, /usr/local/bin/caseiterator,
#                                     /usr/local/share/applications, /usr/local/share/icons (root)
#   ./install.sh --prefix DIR         system-wide into DIR instead of /opt/caseiterator
#   ./install.sh --user               this user only: ~/.local/opt/caseiterator,
#                                     ~/.local/bin/caseiterator, $XDG_DATA_HOME/applications, icons
#   ./install.sh --kiosk-autostart    also start the app full screen at login (reading stations):
#                                     /etc/xdg/autostart (system) or $XDG_CONFIG_HOME/autostart (--user)
#   --bindir DIR / --datadir DIR      where the command link / the desktop entry and icons go
#   --autostartdir DIR                where the kiosk autostart entry goes
#
# Everything installed outside the prefix is listed in PREFIX/share/install-manifest.txt;
# PREFIX/uninstall.sh removes exactly that, then the prefix. Installing over an earlier
# CaseIterator install replaces it; a non-empty folder that is not one is refused.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
say() { echo "[install] $*"; }
die() {
    echo "[install] ERROR: $*" >&2
    exit 1
}
usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

mode=system prefix="" bindir="" datadir="" autostartdir="" autostart=0
while (($#)); do
    case "$1" in
    --user) mode=user ;;
    --prefix) prefix="${2:?--prefix needs a folder}" && shift ;;
    --prefix=*) prefix="${1#*=}" ;;
    --bindir) bindir="${2:?--bindir needs a folder}" && shift ;;
    --datadir) datadir="${2:?--datadir needs a folder}" && shift ;;
    --autostartdir) autostartdir="${2:?--autostartdir needs a folder}" && shift ;;
    --kiosk-autostart) autostart=1 ;;
    -h | --help) usage && exit 0 ;;
    *) usage >&2 && die "unknown argument: $1" ;;
    esac
    shift
done

[[ -x "$HERE/caseiterator" && -d "$HERE/_internal" && -f "$HERE/share/VERSION" ]] ||
    die "$HERE is not a CaseIterator bundle (caseiterator, _internal/, share/VERSION expected)"
VERSION="$(cat "$HERE/share/VERSION")"

if [[ $mode == user ]]; then
    data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
    prefix="${prefix:-$HOME/.local/opt/caseiterator}"
    bindir="${bindir:-$HOME/.local/bin}"
    datadir="${datadir:-$data_home}"
    autostartdir="${autostartdir:-${XDG_CONFIG_HOME:-$HOME/.config}/autostart}"
else
    prefix="${prefix:-/opt/caseiterator}"
    bindir="${bindir:-/usr/local/bin}"
    datadir="${datadir:-/usr/local/share}"
    autostartdir="${autostartdir:-/etc/xdg/autostart}"
fi
[[ $prefix == /* ]] || prefix="$PWD/$prefix"
prefix="${prefix%/}"
[[ -n $prefix && $prefix != "/" ]] || die "refusing to install into '/'"

[[ "$HERE" != "$(cd "$prefix" 2>/dev/null && pwd -P)" ]] ||
    die "this is the installed copy in $prefix: run install.sh of the new bundle"

# An earlier install in the same place is replaced (its own uninstall removes it cleanly).
if [[ -e $prefix ]]; then
    if [[ -f $prefix/share/install-manifest.txt && -x $prefix/uninstall.sh ]]; then
        say "replacing the CaseIterator $(cat "$prefix/share/VERSION" 2>/dev/null) in $prefix"
        "$prefix/uninstall.sh" --quiet
    elif [[ -d $prefix && -z "$(ls -A "$prefix")" ]]; then
        rmdir "$prefix"
    else
        die "$prefix exists and is not a CaseIterator install: choose another --prefix"
    fi
fi

# Folders above the prefix that this install makes (recorded below, removed by uninstall).
made_above=()
dir="$(dirname "$prefix")"
while [[ ! -d $dir ]]; do
    made_above=("$dir" "${made_above[@]}")
    dir="$(dirname "$dir")"
done
mkdir -p "$(dirname "$prefix")" || die "cannot create $(dirname "$prefix") (system-wide needs root; or use --user)"
say "copying CaseIterator $VERSION to $prefix"
tmp="$prefix.installing.$$"
rm -rf "$tmp"
cp -a "$HERE" "$tmp"
mv "$tmp" "$prefix"

manifest="$prefix/share/install-manifest.txt"
: >"$manifest"
record() { echo "$1" >>"$manifest"; }
for dir in "${made_above[@]}"; do
    record "$dir/"
done

# The desktop entry: Exec is the absolute path (no PATH lookup), quoted for spaces.
desktop_entry() { # $1 = extra arguments of "app" (kiosk), $2 = output file
    local exec_q="\"${prefix//\"/\\\"}/caseiterator\""
    sed -e "s|@EXEC@|$exec_q|" -e "s|@TRYEXEC@|$prefix/caseiterator|" \
        -e "s|@ARGS@|$1|" -e "s|@PREFIX@|$prefix|" \
        "$prefix/share/caseiterator.desktop.in" >"$2"
    chmod 644 "$2"
}

# Folders made here are recorded too (with a trailing /), so that uninstall leaves no empty
# ones behind; folders that existed before are never removed.
make_dirs() {
    local dir missing
    for dir in "$@"; do
        missing=()
        while [[ ! -d $dir ]]; do
            missing=("$dir" "${missing[@]}")
            dir="$(dirname "$dir")"
        done
        for dir in "${missing[@]}"; do
            mkdir "$dir"
            record "$dir/"
        done
    done
}
make_dirs "$bindir" "$datadir/applications" "$datadir/icons/hicolor/scalable/apps" \
    "$datadir/icons/hicolor/256x256/apps"
link="$bindir/caseiterator"
if [[ -e $link || -L $link ]]; then
    if [[ -L $link && "$(readlink "$link")" == */caseiterator ]]; then
        rm -f "$link" # a link of an install elsewhere: the new install takes the command
    else
        die "$link exists and is not a CaseIterator link: remove it or use --bindir"
    fi
fi
ln -s "$prefix/caseiterator" "$link"
record "$link"
say "command: $link"

entry="$datadir/applications/caseiterator.desktop"
desktop_entry "" "$entry"
record "$entry"
cp "$prefix/share/caseiterator.svg" "$datadir/icons/hicolor/scalable/apps/caseiterator.svg"
record "$datadir/icons/hicolor/scalable/apps/caseiterator.svg"
cp "$prefix/share/caseiterator.png" "$datadir/icons/hicolor/256x256/apps/caseiterator.png"
record "$datadir/icons/hicolor/256x256/apps/caseiterator.png"
say "desktop entry: $entry"

if ((autostart)); then
    make_dirs "$autostartdir"
    auto="$autostartdir/caseiterator-kiosk.desktop"
    desktop_entry " --kiosk" "$auto"
    sed -i -e 's|^Name=CaseIterator$|Name=CaseIterator (reading station)|' -e 's| %f$||' "$auto"
    record "$auto"
    say "kiosk autostart: $auto"
fi

# Menus and icon caches pick the entry up at once where the tools exist (optional).
if command -v update-desktop-database >/dev/null; then
    update-desktop-database -q "$datadir/applications" 2>/dev/null || true
fi
if command -v gtk-update-icon-cache >/dev/null && [[ -f $datadir/icons/hicolor/index.theme ]]; then
    gtk-update-icon-cache -q -t "$datadir/icons/hicolor" 2>/dev/null || true
fi

# The uninstaller, beside the app, knows where the manifest is.
say "installed. Start it from the applications menu or run: caseiterator"
[[ ":$PATH:" == *":$bindir:"* ]] || say "note: $bindir is not in PATH"
say "uninstall: $prefix/uninstall.sh"
