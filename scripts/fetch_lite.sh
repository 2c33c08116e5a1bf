#!/bin/bash
# Fetch the MindSpore Lite 2.0 runtime (C++ headers and libraries) from the package registry and
# unpack it into a git-ignored, cached folder; prints that folder (the MS_LITE_HOME to build with).
#   bash scripts/fetch_lite.sh [DEST]        DEST default: <repo>/.lite
# The CPU wheel on PyPI (168 MB, manylinux x86_64) holds mindspore_lite/include/api/*.h and
# mindspore_lite/lib/ (libmindspore-extendrt_python.so: mindspore::Model; libmindspore_converter.so:
# mindspore::Converter). Fetched with `pip download --python-version 3.7`, so any Python will do;
# nothing is installed and no Python 3.7 is needed. A second run finds the cache and downloads nothing.
set -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
VERSION="${MS_LITE_VERSION:-2.0.0}"
case "$1" in -h|--help) echo "usage: bash scripts/fetch_lite.sh [DEST]"; exit 0 ;; esac
DEST="$(abs_path "${1:-$REPO_ROOT/.lite}")"
HOME_DIR="$DEST/mindspore-lite-$VERSION"
if [ -f "$HOME_DIR/.complete" ]; then
    echo "$HOME_DIR"
    exit 0
fi
mkdir -p "$DEST" || die "cannot create $DEST"
TMP="$DEST/.fetch-$$"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/wheel" || die "cannot create $TMP"
echo "fetching mindspore-lite==$VERSION (CPU wheel, about 170 MB) into $DEST" >&2
"$PYTHON" -m pip download --disable-pip-version-check -q "mindspore-lite==$VERSION" --no-deps \
    --only-binary=:all: --python-version 3.7 --platform manylinux1_x86_64 -d "$TMP/wheel" >"$TMP/pip.log" 2>&1 \
    || { tail -n 3 "$TMP/pip.log" >&2; echo "error: cannot download mindspore-lite==$VERSION from the package registry" >&2; exit 3; }
WHEEL="$(ls "$TMP"/wheel/mindspore_lite-*.whl 2>/dev/null | head -n 1)"
[ -n "$WHEEL" ] || { echo "error: pip wrote no mindspore_lite wheel into $TMP/wheel" >&2; exit 1; }
# only the C++ side: headers and shared libraries (not the Python 3.7 extension)
"$PYTHON" - "$WHEEL" "$TMP/unpacked" <<'PY' || { echo "error: cannot unpack $WHEEL" >&2; exit 1; }
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    members = [m for m in wheel.namelist() if m.startswith(("mindspore_lite/include/", "mindspore_lite/lib/lib"))]
    wheel.extractall(sys.argv[2], members)
PY
[ -f "$TMP/unpacked/mindspore_lite/include/api/model.h" ] \
    || { echo "error: $WHEEL holds no mindspore_lite/include/api/model.h" >&2; exit 1; }
basename "$WHEEL" > "$TMP/unpacked/.complete"
rm -rf "$HOME_DIR"
mv "$TMP/unpacked" "$HOME_DIR" || die "cannot move the unpacked wheel to $HOME_DIR"
echo "$HOME_DIR"
