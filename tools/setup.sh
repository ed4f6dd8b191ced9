#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install napari-mrmicro into it with the given extras.
# Idempotent: reinstalls only when pyproject.toml or the extras change.
# Usage: tools/setup.sh [extras]   e.g. tools/setup.sh testing
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-all}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  echo "error: need root (or sudo) to run: $*" >&2; exit 1; fi; }

python=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python="$candidate"; break
  fi
done
if [ -z "$python" ]; then
  echo "error: napari-mrmicro needs Python >= 3.11 (on Debian 12: apt-get install python3)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  if ! "$python" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    echo "Installing python3-venv (Debian) ..."
    as_root apt-get update -qq
    as_root apt-get install -y -qq python3-venv python3-pip >/dev/null
    "$python" -m venv .venv
  fi
fi

stamp=".venv/.mrmicro-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "Installing napari-mrmicro[$extras] into .venv ..."
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  echo "$want" > "$stamp"
fi
