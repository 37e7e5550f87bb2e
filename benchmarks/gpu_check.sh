#!/usr/bin/env bash
# GPU checks of the engine and of distributed training, in under 8 minutes on one CUDA device:
# vLLM vs HF greedy parity and tokens/s, a 0.5-1.5B model's decode against the memory-bandwidth
# bound, and ZeRO-2 / ZeRO-3 fits of trained_router with tokens/s and peak memory.
# Each check prints its figures or one "SKIP <check>: <reason>" line; exit 0 unless a check that
# could run failed.
#
#   bash benchmarks/gpu_check.sh /path/to/Qwen2.5-0.5B-Instruct     # or GPU_CHECK_MODEL=...
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
MODEL="${1:-${GPU_CHECK_MODEL:-}}"
export WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false

echo "gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ), model: ${MODEL:-none}"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
# the whole run stays under 8 minutes: each fit is capped inside, everything together here
timeout 470 "$PYTHON" benchmarks/gpu_check.py ${MODEL:+--model "$MODEL"} --fit_timeout_s 150
status=$?
if [ "$status" -eq 124 ]; then
  echo "gpu_check: stopped at the 8-minute limit"
fi
exit "$status"
