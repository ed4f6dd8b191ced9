#!/usr/bin/env bash
# Set up .venv and run the headless demo; results go to the folder given (default mrmicro-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh all
exec .venv/bin/mrmicro demo "${1:-mrmicro-demo}"
