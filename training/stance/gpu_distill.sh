#!/usr/bin/env bash
# Distillation on one GPU: fine-tune all-mpnet-base-v2 teachers, label the transfer set (train split +
# mention-swapped copies) with their mean calibrated probabilities, then train MiniLM students on it
# (gpu_sweep.sh), average each variant's seeds and bring back the soup that is best on held-out train.
#
# Usage (from the repository root; see README.md for how the bases are packed and carried):
#   TEACHER_BASE=/tmp/mpnet STUDENT_BASE=.carry/minilm DATA=.carry/newsmtsc bash training/stance/gpu_distill.sh
set -u
PY=${PY:-python3}
TEACHER_BASE=${TEACHER_BASE:?fp16 all-mpnet-base-v2 folder}
STUDENT_BASE=${STUDENT_BASE:-.carry/minilm}
DATA=${DATA:-.carry/newsmtsc}
TEACHER_SEEDS=${TEACHER_SEEDS:-1 2 3}
TEACHER_ARGS=${TEACHER_ARGS:---lr 3e-5 --layer-decay 0.95 --epochs 4 --augment 0.25}
TEACHER_LIMIT_S=${TEACHER_LIMIT_S:-220}
SWAPS=${SWAPS:-2}
RUNS=${RUNS:-/tmp/stance_kd}
OUT=${OUT:-training/runs/stance_kd_out}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
mkdir -p "$RUNS/teachers/logs" "$OUT"
start=$(date +%s)
for s in $TEACHER_SEEDS; do
  # shellcheck disable=SC2086  # TEACHER_ARGS is a list of options
  timeout "$TEACHER_LIMIT_S" "$PY" -m training.stance.train fit --seeds "$s" --base "$TEACHER_BASE" \
    --data-dir "$DATA" --out "$RUNS/teachers/mpnet" $TEACHER_ARGS >"$RUNS/teachers/logs/mpnet.s$s.log" 2>&1 &
done
wait
grep -h "epoch\|\[last\]\|Error" "$RUNS"/teachers/logs/*.log
echo "teachers done after $(( $(date +%s) - start )) s"
teachers=$(for d in "$RUNS"/teachers/mpnet/seed*/; do [ -f "$d/model.safetensors" ] && echo "$d"; done)
# shellcheck disable=SC2086
"$PY" -m training.stance.train teach --runs $teachers --out "$RUNS/transfer.jsonl" --swaps "$SWAPS" 2>&1 \
  | grep -v "Warning\|warn" | tail -n 3
cp "$RUNS/transfer.scores.json" "$OUT/teacher_scores.json"
echo "transfer set labelled after $(( $(date +%s) - start )) s"
shift 0
RUNS="$RUNS/students" OUT="$OUT" BASE="$STUDENT_BASE" DATA="$DATA" PY="$PY" \
  bash training/stance/gpu_sweep.sh "$@"
tar czf "$OUT/teachers.tgz" -C "$RUNS/teachers" --exclude='*.safetensors' .
echo "distillation done after $(( $(date +%s) - start )) s"
