#!/usr/bin/env bash
# Create the virtual environment and install the suite with everything it needs.
#
# Usage: tools/install.sh [VENV_DIR]   (default .venv)
#
# Why a script and not just `pip install -e .`: mmcv 2.1.0 (required by mmdet 3.3 and
# mmseg 1.2.2) is published on PyPI as source only, and its setup.py compiles the ops with
# -std=c++14/17 while the headers of torch >= 2.14 need C++20. This script builds mmcv from
# the PyPI source with the standard raised, unless a prebuilt wheel is offered through
# PIP_FIND_LINKS (or was built here before, in .cache/wheels).
set -euo pipefail

VENV=${1:-.venv}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHEEL_CACHE=${MMCV_WHEEL_CACHE:-$ROOT/.cache/wheels}
# torch and torchvision are pinned: mmcv's compiled ops are tied to the exact torch ABI.
TORCH_PINS="torch==2.14.1 torchvision==0.29.1"
MMCV_VERSION=2.1.0

log() { printf '[install] %s\n' "$*" >&2; }

mkdir -p "$WHEEL_CACHE"
export PIP_FIND_LINKS="${PIP_FIND_LINKS:-} $WHEEL_CACHE"

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV"
    python3 -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"

log "installing $TORCH_PINS"
# setuptools < 81 still ships pkg_resources, which mmcv's setup.py imports.
$PIP install -q $TORCH_PINS "setuptools<81" wheel ninja

if $VENV/bin/python -c "import mmcv, mmcv.ops" 2>/dev/null; then
    log "mmcv with compiled ops already installed"
elif $PIP install -q --only-binary=mmcv "mmcv==$MMCV_VERSION" 2>/dev/null; then
    log "mmcv $MMCV_VERSION installed from a prebuilt wheel (PIP_FIND_LINKS)"
else
    if ! command -v "${CXX:-g++}" >/dev/null; then
        log "ERROR: no prebuilt mmcv wheel was found and no C++ compiler (${CXX:-g++}) is installed."
        log "Install one (Debian/Ubuntu: apt-get install g++) or point PIP_FIND_LINKS at a folder"
        log "holding mmcv-$MMCV_VERSION built for torch 2.14.1 / Python 3.11."
        exit 1
    fi
    log "building mmcv $MMCV_VERSION with CPU ops from source (about 15-20 minutes on 2 cores)"
    BUILD=$(mktemp -d)
    trap 'rm -rf "$BUILD"' EXIT
    $PIP download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD"
    # The one patch: raise every hard-coded C++ standard to C++20 for torch >= 2.14.
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g; s#/std:c\+\+17#/std:c++20#g' "$BUILD/mmcv-$MMCV_VERSION/setup.py"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        $PIP wheel -q --no-deps --no-build-isolation "$BUILD/mmcv-$MMCV_VERSION" -w "$WHEEL_CACHE"
    $PIP install -q "$WHEEL_CACHE/mmcv-$MMCV_VERSION"-*.whl
fi

log "installing the suite (editable) with test extras"
$PIP install -q -e "$ROOT[test]"
$VENV/bin/python -c "import mmcv.ops, mmdet, mmseg; print('[install] mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'mmseg', mmseg.__version__)"
