#!/usr/bin/env bash
# MLP and LeNet epochs on MNIST, and ResNet-50 training steps, in Loom and in PyTorch, side by side in one run, with the
# same network, batch, optimizer and thread count. Prints images/s and the ratio.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
THREADS=${THREADS:-$(nproc)}
out=$(LOOM_KERNEL_THREADS=$THREADS LOOM_DATA_DIR="$ROOT/data" dotnet run -c Release --no-build \
  --project "$ROOT/src/Loom.Examples" -- mnist 4)
# Median of epochs 2-4 (epoch 1 warms up).
secs=$(echo "$out" | grep 'time =' | tail -3 | awk '{print $4}' | sort -n | sed -n 2p)
loom=$(awk -v s="$secs" 'BEGIN { printf "%.0f", 60000 / s }')
echo "MLP epoch (784-128-64-10, batch 100, SGD momentum, $THREADS threads): Loom $loom img/s"
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  torch=$(OMP_NUM_THREADS=$THREADS /usr/bin/python3 "$ROOT/tests/bench/peer_torch.py" "$ROOT/data/mnist" "$THREADS" mlp 4)
  echo "MLP epoch, same setup: PyTorch $torch img/s; Loom/PyTorch = $(awk -v a="$loom" -v b="$torch" 'BEGIN { printf "%.2f", a / b }')"
else
  echo "PyTorch is not installed (sudo apt-get install -y python3-torch); no comparison printed"
fi

# LeNet: one warm-up epoch and one timed epoch each (an epoch takes about a minute).
if [ "${LENET:-1}" = 1 ]; then
  out=$(LOOM_KERNEL_THREADS=$THREADS LOOM_DATA_DIR="$ROOT/data" dotnet run -c Release --no-build \
    --project "$ROOT/src/Loom.Examples" -- lenet 2)
  secs=$(echo "$out" | grep 'time =' | tail -1 | awk '{print $4}')
  loom=$(awk -v s="$secs" 'BEGIN { printf "%.0f", 60000 / s }')
  echo "LeNet epoch (batch 100, SGD momentum, $THREADS threads): Loom $loom img/s"
  if /usr/bin/python3 -c "import torch" 2>/dev/null; then
    torch=$(OMP_NUM_THREADS=$THREADS /usr/bin/python3 "$ROOT/tests/bench/peer_torch.py" "$ROOT/data/mnist" "$THREADS" lenet 2)
    echo "LeNet epoch, same setup: PyTorch $torch img/s; Loom/PyTorch = $(awk -v a="$loom" -v b="$torch" 'BEGIN { printf "%.2f", a / b }')"
  fi
fi

# ResNet-50 training on random images (no data needed): warm-up step, then timed steps.
if [ "${RESNET:-1}" = 1 ]; then
  BATCH=${RESNET_BATCH:-16}
  STEPS=${RESNET_STEPS:-3}
  out=$(LOOM_KERNEL_THREADS=$THREADS dotnet run -c Release --no-build --project "$ROOT/src/Loom.Examples" -- resnet "$BATCH" "$STEPS")
  echo "$out"
  loom=$(echo "$out" | sed -nE 's/.*: ([0-9.]+) img\/s.*/\1/p')
  if /usr/bin/python3 -c "import torch" 2>/dev/null; then
    torch=$(OMP_NUM_THREADS=$THREADS /usr/bin/python3 "$ROOT/tests/bench/peer_torch_resnet.py" "$THREADS" "$BATCH" "$STEPS")
    echo "ResNet-50 training, same setup: PyTorch $torch img/s; Loom/PyTorch = $(awk -v a="$loom" -v b="$torch" 'BEGIN { printf "%.2f", a / b }')"
  fi
fi
