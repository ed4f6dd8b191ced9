#!/usr/bin/env bash
# Set up .venv with the test extras and the virtual display, then run the whole test suite.
# GUI tests run in a real napari viewer under Xvfb (pytest-xvfb starts it).
set -euo pipefail
cd "$(dirname "$0")/.."

gui_packages="xvfb libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4
  libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0
  libxcb-xinerama0 libxcb-xfixes0 libdbus-1-3 libfontconfig1"
missing=""
for p in $gui_packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "Installing system packages for the GUI tests:$missing"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi

bash tools/setup.sh testing
exec .venv/bin/python -m pytest "$@"
