#!/usr/bin/env bash
# GPU benchmark (issue: GPU backend): MLP and LeNet epochs on MNIST with the data set on
# the device, and ResNet-50 training images/s, each beside PyTorch on the same GPU in the
# same run. Loom's side uses whatever GPU backend libloom finds (LOOM_CUDA_LIBRARY, beside
# libloom, the library path); without one it says so and measures nothing.
#   tests/bench/gpu.sh            (EPOCHS, LENET_EPOCHS, RESNET_BATCH, RESNET_STEPS override;
#   LOOM_EXAMPLES: a published Loom.Examples program to run instead of `dotnet run`;
#   PYTHON: the Python with PyTorch, default /usr/bin/python3)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
EPOCHS=${EPOCHS:-4}
LENET_EPOCHS=${LENET_EPOCHS:-3}
RESNET_BATCH=${RESNET_BATCH:-64}
RESNET_STEPS=${RESNET_STEPS:-10}
THREADS=$(nproc)
export LOOM_DATA_DIR="$ROOT/data"
PYTHON=${PYTHON:-/usr/bin/python3}
if [ -n "${LOOM_EXAMPLES:-}" ]; then
  run() { "$LOOM_EXAMPLES" "$@"; }
else
  run() { dotnet run -c Release --no-build --project "$ROOT/src/Loom.Examples" -- "$@"; }
fi

gpus=$(PYTHONPATH="$ROOT/bindings/python" "$PYTHON" -c 'import loom; print(loom.num_gpus())')
PYTHONPATH="$ROOT/bindings/python" "$PYTHON" -c 'import loom; print(loom.backend_describe())'
if [ "$gpus" = 0 ]; then
  echo "no GPU backend: nothing measured"
  exit 0
fi
torch_cuda=0
if "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  torch_cuda=1
else
  echo "PyTorch has no CUDA device here: Loom's numbers only"
fi
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# Median epoch time of the timed epochs (the first warms up).
median_epoch() { grep 'time =' | tail -n +2 | awk '{print $4}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for net in mlp lenet; do
  ex=$([ $net = mlp ] && echo mnist || echo lenet)
  n=$([ $net = mlp ] && echo "$EPOCHS" || echo "$LENET_EPOCHS")
  secs=$(run "$ex" "$n" "--ctx=gpu(0)" | median_epoch)
  loom=$(awk -v s="$secs" 'BEGIN { printf "%.0f", 60000 / s }')
  echo "$net epoch on gpu(0), batch 100: Loom ${secs} s ($loom img/s)"
  if [ $torch_cuda = 1 ]; then
    torch=$("$PYTHON" "$ROOT/tests/bench/peer_torch.py" "$ROOT/data/mnist" "$THREADS" $net "$n" cuda)
    echo "$net epoch, same setup: PyTorch $torch img/s; Loom/PyTorch = $(ratio "$loom" "$torch")"
  fi
done

# ResNet-50 twice: float32 arithmetic on both sides (Loom's default; PyTorch with
# TF32 off), then TF32 tensor cores allowed on both (LOOM_CUDA_TF32=1; PyTorch's
# default lets its convolutions use TF32).
for tf32 in 0 1; do
  out=$(LOOM_CUDA_TF32=$tf32 run resnet "$RESNET_BATCH" "$RESNET_STEPS" "--ctx=gpu(0)")
  echo "TF32 $([ $tf32 = 1 ] && echo allowed || echo off): $out"
  loom=$(echo "$out" | sed -nE 's/.*: ([0-9.]+) img\/s.*/\1/p')
  if [ $torch_cuda = 1 ]; then
    torch=$(TORCH_TF32=$tf32 "$PYTHON" "$ROOT/tests/bench/peer_torch_resnet.py" "$THREADS" "$RESNET_BATCH" "$RESNET_STEPS" cuda)
    echo "ResNet-50 training, same setup (TF32 $([ $tf32 = 1 ] && echo allowed || echo off)): PyTorch $torch img/s; Loom/PyTorch = $(ratio "$loom" "$torch")"
  fi
done
