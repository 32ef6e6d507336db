#!/usr/bin/env bash
# One call on a GPU host: ViT-B/32 fp16 frame-encoding throughput, text-query latency, and search
# at 1M clips (faiss-gpu when installed, else a torch GEMM first stage; exact rerank on the GPU).
# Without CUDA it runs the same code on the CPU; `--smoke` shrinks it to seconds (tested in CI).
#   bash bench/gpu.sh [--smoke] [--clips N] [--out results.json]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1
"$PY" -c "import torch; print('cuda:', torch.cuda.is_available())"
exec "$PY" bench/bench_gpu.py "$@"
