#!/usr/bin/env bash
# Records every GPU figure of issue #15 in one run on a machine with a CUDA GPU (about 8 minutes on an H100/H200).
#
#     bash benchmarks/gpu_check.sh 2>&1 | tee gpu_check.log
#
# ViT-B-32 and ViT-L-14 run with random weights (--pretrained none): throughput does not depend on the weights,
# and nothing is downloaded. Paste the SUMMARY/ratio lines into docs/benchmarks.md ("GPU data path").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$PY -c "import torch, torchvision, open_clip; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'open_clip', open_clip.__version__)"

echo "== GPU-only tests (device preprocess on CUDA, search and measure on CUDA vs CPU)"
$PY -m pytest -q -x tests/test_device_preprocess.py tests/test_torch_passes.py tests/test_metrics_retrieval.py -k "gpu or cuda or device or torch" || true

cd benchmarks
echo "== (1) embed: ViT-B-32 floors, end to end, preprocess check"
$PY embed.py --device cuda --model ViT-B-32 --pretrained none --n-images 8192 --skip-bare
echo "== (1) embed: ViT-L-14"
$PY embed.py --device cuda --model ViT-L-14 --pretrained none --n-images 4096 --skip-bare
echo "== (3) retrieval: R@1/5/10 both ways at 50,000 x 50,000 x 512 vs one bare GPU X·Yᵀ + top-k pass"
$PY retrieval.py --device cuda --n 50000 --dim 512
echo "== (3) measure: all metrics at 50,000 x 512 on the GPU vs one GPU X·Yᵀ pass, equal to the CPU to 1e-5"
$PY measure.py --device cuda --n 50000 --dim 512
