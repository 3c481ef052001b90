#!/usr/bin/env bash
# The GPU check (issue 14) on the GPU machine: install the wheels it lacks, then run bench/gpu_check.py.
#
# Here, once (writes the git-ignored bench/gpu_pack, ~36 MiB: catalog subset, demo shelves, wheels):
#   .venv/bin/python bench/gpu_check.py --pack bench/gpu_pack \
#       --catalog-source ../shared/data/fashion-product-images-small
# Then, through the device tool (one call; the check stops itself after --budget-s, 450 s by default):
#   run(command="bash bench/gpu_check.sh", carry=["bench/gpu_pack"], timeout_s=540)
# It writes $OUT/gpu_check_gpu.json (rewritten after every stage) and $OUT/gpu_check.log; copy the JSON to
# bench/results/. Extra arguments go to gpu_check.py (e.g. --stages classifier,extraction).
set -uo pipefail
cd "$(dirname "$0")/.."
PACK=${GPU_CHECK_PACK:-bench/gpu_pack}
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
LOG=${OUT:-/tmp}/gpu_check.log  # gpu_check.py itself writes its JSON to $OUT (else bench/results)

# Wheels into a folder of their own (the device README's recipe): the image's torch stays untouched.
# A failed install is reported, not fatal: the stages that need a wheel then record their own error.
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/gpu_check_site "$PACK"/wheels/*.whl || echo "gpu_check.sh: installing the wheels failed" >&2
export PYTHONPATH=/tmp/gpu_check_site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" bench/gpu_check.py --pack-dir "$PACK" "$@" 2>&1 | tee "$LOG"
