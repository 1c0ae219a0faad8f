#!/usr/bin/env bash
# Run by `.ci/setup --dev` with the venv path as $1: make that venv able to import open_clip (the TaxaBind
# image/text towers need it, and open_clip imports torchvision) and hold the GeoCLIP wheel weights.
#   - torchvision already imports: torch is left alone.
#   - no GPU: the CPU torch 2.13.0 wheel has no torchvision that imports beside it, so torch is replaced by
#     torch==2.14.1 + torchvision==0.29.1 (x86_64; a CUDA build, ~5 GB, runs on the CPU) or
#     torch==2.9.1 + torchvision==0.24.1 (aarch64).
#   - GPU: torchvision is installed pinned to the torch already there.
# Then open_clip_torch (pinned to the resulting torch) and geoclip==1.3.0 with --no-deps.
# If anything fails, the open_clip tests skip with a reason instead of breaking the whole setup.
set -uo pipefail
VENV=${1:-.venv}
PY="$VENV/bin/python"
PIP="$PY -m pip --disable-pip-version-check -q"
log() { echo "[setup.d/encoders] $*" >&2; }

if "$PY" -c "import torchvision" 2>/dev/null; then
  log "torchvision imports: leaving torch as it is"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  TV=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
  log "GPU: installing torchvision for the installed torch $TV"
  $PIP install torchvision "torch==$TV" || log "no torchvision matches torch $TV: open_clip tests will skip"
else
  case "$(uname -m)" in
    aarch64|arm64) PAIR="torch==2.9.1 torchvision==0.24.1" ;;
    *) PAIR="torch==2.14.1 torchvision==0.29.1" ;;
  esac
  log "no GPU and no torchvision: installing $PAIR (runs on the CPU)"
  $PIP install $PAIR || log "could not install $PAIR: open_clip tests will skip"
fi

TORCH=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null || echo "")
if [ -n "$TORCH" ]; then
  $PIP install open_clip_torch "torch==$TORCH" || log "could not install open_clip_torch: open_clip tests will skip"
fi
$PIP install --no-deps geoclip==1.3.0 || log "could not install geoclip: the loc encoder's offline default is missing"
if "$PY" -c "import open_clip" 2>/dev/null; then
  log "open_clip imports (torch $TORCH)"
else
  log "open_clip does not import: the open_clip tests will skip"
fi
exit 0
