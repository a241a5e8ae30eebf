#!/usr/bin/env bash
# One command for a lent GPU machine (issue #13's figures), from the repository root:
#   bash benchmarks/gpu/device.sh            # results under $OUT (or benchmarks/results/gpu)
# Installs wheels carried in .whl/ (the device image has torch, transformers, peft, accelerate
# but no diffusers), then: the --blocks_to_swap sweep on the real-size Qwen-Image DiT (FP8 +
# checkpointing, 1024^2), then figure 6's modes for Qwen-Image. Each part has its own time limit
# and writes its results as it goes, so a part cut short keeps what it measured.
set -u
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:$PWD/plugins/diffsynth-qwen-image/src:$PWD/plugins/diffsynth-flux/src:$PWD/plugins/diffsynth-wan/src:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1 DIFFSYNTH_SKIP_DOWNLOAD=True
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/machine.txt"
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)" | tee -a "$OUT/machine.txt"
timeout "${SWAP_SECONDS:-300}" python3 -m benchmarks.gpu.bench --models qwen-image --swap "${SWAP_COUNTS:-0,10,20,30,45}" \
  --sync "${SWAP_SYNC:-30}" --steps 3 --timeout "${SWAP_SECONDS:-300}" --out "$OUT/swap.jsonl" 2>&1 | tee "$OUT/swap.log"
timeout "${FIG6_SECONDS:-150}" python3 -m benchmarks.gpu.bench --models "${FIG6_MODELS:-qwen-image}" --modes fp8+ckpt,fp8,plain \
  --steps 3 --timeout 120 --no-plan 2>&1 | tee "$OUT/fig6.jsonl"
echo "done"
