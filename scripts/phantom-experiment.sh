#!/usr/bin/env bash
# The phantom experiment of docs/evaluation.md, on the CPU: synthesize labeled and unlabeled CT phantoms,
# pretrain a small FPN3d ("ours"), then with k-fold cross-validation
#   1. linear probing on the pretrained backbone vs on a randomly initialised one (all training cases),
#   2. fine-tuning the pretrained backbone vs training from scratch with TRAIN_CASES training cases,
# and print both tables (Dice %, organ columns = mean over folds, Overall = mean +- std over folds).
#
#   bash scripts/phantom-experiment.sh                 # about 35 minutes on two shared cores (runs/phantom-experiment)
#   OUT=/tmp/px PRETRAIN_STEPS=20 LINEAR_STEPS=10 FT_STEPS=10 FREEZE=4 WARMUP=2 bash scripts/phantom-experiment.sh   # smoke run
#
# Every stage resumes: rerunning the script skips finished runs and folds. All settings are below and are
# the same for both arms of each comparison; they were fixed before any result was seen.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build}
OUT=${OUT:-runs/phantom-experiment}
FOLDS=${FOLDS:-3}
LABELED=${LABELED:-9}              # labeled phantoms: FOLDS folds of LABELED/FOLDS validation cases
UNLABELED=${UNLABELED:-16}         # unlabeled phantoms for pretraining (another seed: no overlap)
PRETRAIN_STEPS=${PRETRAIN_STEPS:-600}
LINEAR_STEPS=${LINEAR_STEPS:-200}
FT_STEPS=${FT_STEPS:-200}
FT_BATCH=${FT_BATCH:-4}            # 2 left BatchNorm running statistics too noisy (docs/evaluation.md)
FREEZE=${FREEZE:-60}               # fine-tuning: backbone frozen for these steps (paper 15k of 45k)
WARMUP=${WARMUP:-20}               # then its lr rises x10 over these steps (paper 1.2k)
TRAIN_CASES=${TRAIN_CASES:-4}
THREADS=${THREADS:-2}
DEVICE=${DEVICE:-cpu}              # cuda on a GPU build
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}   # spinning OpenMP threads are very slow on a busy machine

for p in synth pretrain evaluate; do
  [ -x "$B/$p" ] || { echo "missing $B/$p: build first (bash scripts/build.sh or cmake --build $B)"; exit 1; }
done
mkdir -p "$OUT"
T0=$(date +%s)
stage() { echo; echo "== [$(( $(date +%s) - T0 )) s] $*"; }

# Network and data: base 8 channels, 3 scales, patches 32x32x16 at 4x4x8 mm (128 mm cubes of anatomy).
ARCH=(--base-channels 8 --scales 3)
GRID=(--spacing 4 4 8 --patch 32 32 16)
EVAL=("${GRID[@]}" --folds "$FOLDS" --seed 0 --device "$DEVICE" --threads "$THREADS" --cache "$OUT/cache" --resume)

stage "synthesize $LABELED labeled + $UNLABELED unlabeled CT phantoms"
[ -f "$OUT/labeled/dataset.json" ] || "$B/synth" -o "$OUT/labeled" --cases "$LABELED" --seed 2024 --spacing 2 2 4 > /dev/null
[ -d "$OUT/unlabeled" ] || "$B/synth" -o "$OUT/unlabeled" --cases "$UNLABELED" --seed 4048 --first 100 --spacing 2 2 4 --unlabeled > /dev/null

stage "pretrain ($PRETRAIN_STEPS steps)"
if [ ! -f "$OUT/pretrain/backbone.safetensors" ]; then
  resume=(); [ -f "$OUT/pretrain/config.json" ] && resume=(--resume)
  "$B/pretrain" --data "$OUT/unlabeled" -o "$OUT/pretrain" --modality ct "${ARCH[@]}" "${GRID[@]}" --steps "$PRETRAIN_STEPS" \
    --batch-pairs 2 --voxels-per-pair 256 --lr 1e-3 --save-every 100 --device "$DEVICE" --threads "$THREADS" --seed 0 "${resume[@]}" | grep -v '^step ' || true
fi
W="$OUT/pretrain/backbone.safetensors"
[ -f "$W" ] || { echo "pretraining did not produce $W"; exit 1; }

LIN=(--mode linear --steps "$LINEAR_STEPS" --batch 4 --lr 3e-3)
stage "linear probe, pretrained backbone ($FOLDS folds x $LINEAR_STEPS steps)"
"$B/evaluate" "${LIN[@]}" --data "$OUT/labeled" -o "$OUT/linear-pretrained" --weights "$W" --name "linear, pretrained" "${EVAL[@]}" | grep -v '^step '
stage "linear probe, random backbone"
"$B/evaluate" "${LIN[@]}" --data "$OUT/labeled" -o "$OUT/linear-random" "${ARCH[@]}" --name "linear, random init" "${EVAL[@]}" | grep -v '^step '

FT=(--steps "$FT_STEPS" --batch "$FT_BATCH" --lr 1e-3 --train-cases "$TRAIN_CASES")
stage "fine-tune the pretrained backbone, $TRAIN_CASES training cases (frozen $FREEZE steps, warm-up $WARMUP)"
"$B/evaluate" --mode finetune "${FT[@]}" --freeze-steps "$FREEZE" --warmup-steps "$WARMUP" --backbone-lr-start 1e-4 \
  --data "$OUT/labeled" -o "$OUT/finetune" --weights "$W" --name "fine-tune, pretrained, $TRAIN_CASES cases" "${EVAL[@]}" | grep -v '^step '
stage "from scratch, $TRAIN_CASES training cases"
"$B/evaluate" --mode scratch "${FT[@]}" --data "$OUT/labeled" -o "$OUT/scratch" "${ARCH[@]}" \
  --name "from scratch, $TRAIN_CASES cases" "${EVAL[@]}" | grep -v '^step '

stage "tables"
"$B/evaluate" --table "$OUT/linear-pretrained" "$OUT/linear-random" -o "$OUT/table-linear"
"$B/evaluate" --table "$OUT/finetune" "$OUT/scratch" -o "$OUT/table-few-labels"
echo "total wall time: $(( $(date +%s) - T0 )) s"
