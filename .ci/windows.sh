#!/usr/bin/env bash
# The Windows part of CI (issue 14), called by .ci/run after the Linux suite;
# runs alone too: `bash .ci/windows.sh`.
#
# Cross-builds for x86_64-pc-windows-gnu with Debian's mingw-w64, lints that
# build, and runs the Windows test suite (tests/windows) and the library's
# unit tests under wine 8 in a private wine prefix. Installs what is
# missing. wine 8 lacks bcryptprimitives.dll, whose ProcessPrng every Rust
# program calls at start; .ci/windows/bcryptprimitives.c is a stub built
# here and put into the prefix's system32.
#
# The suite sees three extra places: drives E: and F: (fresh temporary
# directories; F: for the one case that backs a whole drive up) and the
# network share \\localhost\share (another one), which wine serves from
# $WINEPREFIX/dosdevices/unc/localhost/share.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/s3backup-target}"
export CARGO_TERM_COLOR=never
WIN=x86_64-pc-windows-gnu
WINE=/usr/lib/wine/wine64
started=$SECONDS

echo "== windows: toolchain (mingw-w64, wine64, $WIN)"
missing=()
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || missing+=(mingw-w64)
[ -x "$WINE" ] || missing+=(wine64)
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        apt-get update -qq
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! rustup target list --installed | grep -qx "$WIN"; then
    rustup target add "$WIN"
fi
"$WINE" --version

echo "== windows: wine prefix and the ProcessPrng stub"
export WINEPREFIX="${S3BACKUP_WINEPREFIX:-$HOME/.cache/s3backup-wine}"
export WINEDEBUG=-all
# No Mono or Gecko install prompts: nothing here needs .NET or a browser.
export WINEDLLOVERRIDES="mscoree,mshtml="
if [ ! -f "$WINEPREFIX/system.reg" ]; then
    mkdir -p "$WINEPREFIX"
    "$WINE" wineboot --init >/dev/null 2>&1
    /usr/lib/wine/wineserver -w
fi
stub="$CARGO_TARGET_DIR/windows-stub/bcryptprimitives.dll"
if [ ! -f "$stub" ] || [ .ci/windows/bcryptprimitives.c -nt "$stub" ]; then
    mkdir -p "$(dirname "$stub")"
    x86_64-w64-mingw32-gcc -shared -O2 -o "$stub" \
        .ci/windows/bcryptprimitives.c .ci/windows/bcryptprimitives.def -ladvapi32
fi
cp "$stub" "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"

# E:, F: and \\localhost\share, fresh for each run, removed at the end.
drives="$(mktemp -d "${TMPDIR:-/tmp}/s3backup-wine-drives.XXXXXX")"
mkdir -p "$drives/e" "$drives/f" "$drives/share" "$WINEPREFIX/dosdevices/unc/localhost"
ln -sfn "$drives/e" "$WINEPREFIX/dosdevices/e:"
ln -sfn "$drives/f" "$WINEPREFIX/dosdevices/f:"
ln -sfn "$drives/share" "$WINEPREFIX/dosdevices/unc/localhost/share"
cleanup() {
    rm -f "$WINEPREFIX/dosdevices/e:" "$WINEPREFIX/dosdevices/f:" "$WINEPREFIX/dosdevices/unc/localhost/share"
    rm -rf "$drives"
}
trap cleanup EXIT

echo "== windows: cargo clippy --target $WIN"
cargo clippy --target "$WIN" --all-targets -- -D warnings

echo "== windows: tests under wine"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$WINE"
# moto (a Linux program, started from the suite through wine) holds keys
# the in-process server cannot hold inside wine: `a:b.txt`, case twins.
export S3BACKUP_MOTO_SERVER="${S3BACKUP_MOTO_SERVER:-$HOME/.cache/s3backup-venv/bin/moto_server}"
# linux_store: a store the Linux binary wrote (run through Z:\bin\sh).
cargo build --bin s3backup
export S3BACKUP_LINUX_BIN="$CARGO_TARGET_DIR/debug/s3backup"
cargo test --target "$WIN" --test windows
# DEST and a store past 260 characters: wine 8's GetFinalPathNameByHandleW
# fails there (ERROR_MORE_DATA), which .ci/windows/final_path.c shows on
# its own; the case runs wherever that program passes.
probe="$CARGO_TARGET_DIR/windows-stub/final_path.exe"
if [ ! -f "$probe" ] || [ .ci/windows/final_path.c -nt "$probe" ]; then
    x86_64-w64-mingw32-gcc -municode -O2 -o "$probe" .ci/windows/final_path.c
fi
mkdir -p "$drives/e/final-path"
if "$WINE" "$probe" 'E:\final-path' >"$drives/final-path.log" 2>&1; then
    cargo test --target "$WIN" --test windows -- --ignored dest_and_store_longer_than_260_characters
else
    echo "wine's GetFinalPathNameByHandleW fails past 260 characters (see .ci/windows/final_path.c):"
    sed 's/^/    /' "$drives/final-path.log"
fi
rm -rf "$drives/e/final-path"
# The library's unit tests of paths, names, the walk, the filters, the
# local store and s3backup's own files (fs::own: file identities are volume serial + file
# index there).
cargo test --target "$WIN" --lib -- target:: fs:: backup::spare store::local::
/usr/lib/wine/wineserver -w

echo "== windows: done in $((SECONDS - started)) s"
