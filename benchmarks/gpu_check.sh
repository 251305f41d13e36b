#!/usr/bin/env bash
# The prepared device check of attnlab (issue 20): runs benchmarks/gpu_check.py from the
# repository root with PYTHONPATH=src (no install step). Logs and summary.json go to $OUT,
# else ./gpu-out. --dry-run: every step on the CPU with tiny sizes (CI runs it).
# On a GPU:  OUT=/path/to/out bash benchmarks/gpu_check.sh        (under 8 minutes on one H200)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND="${MPLBACKEND:-Agg}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The data sets: $ATTNLAB_DATA_DIR, else a gpu-data/ folder carried beside the checkout
# (names/, tinyshakespeare/), else ../shared/data; the machine has no network.
if [ -z "${ATTNLAB_DATA_DIR:-}" ]; then
    for dir in gpu-data ../shared/data; do
        if [ -d "$dir/tinyshakespeare" ]; then
            ATTNLAB_DATA_DIR="$(cd "$dir" && pwd)"
            export ATTNLAB_DATA_DIR
            break
        fi
    done
fi
python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then python=python; fi
exec "$python" benchmarks/gpu_check.py "$@"
