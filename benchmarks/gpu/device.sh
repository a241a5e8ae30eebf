#!/usr/bin/env bash
# One command for a lent GPU machine (issue #13's figures), from the repository root:
#   bash benchmarks/gpu/device.sh            # results under $OUT (or benchmarks/results/gpu)
# Installs wheels carried in .whl/ (the device image has torch, transformers, peft, accelerate
# but no diffusers), then: the --blocks_to_swap sweeps on real-size DiTs (FP8 + checkpointing;
# SWEEPS = "model:N,N,...:sync N,..." each), then figure 6's modes (FIG6 = "model:mode,mode" each).
# Each part has its own time limit and writes results as it goes, so a part cut short keeps
# what it measured.
set -u
OUT=${OUT:-benchmarks/results/gpu}
SWEEPS=${SWEEPS:-"qwen-image:0,10,20,30,45:30"}
FIG6=${FIG6:-"qwen-image:fp8+ckpt,fp8,plain"}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:$PWD/plugins/diffsynth-qwen-image/src:$PWD/plugins/diffsynth-flux/src:$PWD/plugins/diffsynth-wan/src:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1 DIFFSYNTH_SKIP_DOWNLOAD=True
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/machine.txt"
python3 -c "import torch, diffusers, peft, transformers as t; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'peft', peft.__version__, 'transformers', t.__version__)" | tee -a "$OUT/machine.txt"
for sweep in $SWEEPS; do
  IFS=: read -r model counts sync <<<"$sweep"
  timeout "${SWAP_SECONDS:-300}" python3 -m benchmarks.gpu.bench --models "$model" --swap "$counts" --sync "${sync:-}" \
    --steps "${STEPS:-3}" --timeout "${SWAP_SECONDS:-300}" --out "$OUT/swap.jsonl" 2>&1 | tee -a "$OUT/swap.log"
done
for case in $FIG6; do
  IFS=: read -r model modes <<<"$case"
  timeout "${FIG6_SECONDS:-150}" python3 -m benchmarks.gpu.bench --models "$model" --modes "$modes" \
    --steps "${STEPS:-3}" --timeout 120 --no-plan 2>&1 | tee -a "$OUT/fig6.jsonl"
done
echo "done"
