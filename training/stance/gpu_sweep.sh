#!/usr/bin/env bash
# Train several configurations x seeds in parallel on one GPU, average each configuration's seeds
# (soup), print a table, and copy the soup that scores best on the HELD-OUT part of train (never dev) to
# $OUT in 15 MB pieces (the device tool returns files of at most 16 MB).
#
# Usage (from the repository root, with the data and an fp16 base model under .carry/, see README.md):
#   SEEDS="1 2 3" bash training/stance/gpu_sweep.sh NAME="ARGS" NAME="ARGS" ...
# e.g. bash training/stance/gpu_sweep.sh base="" rdrop="--rdrop 1.0"
set -u
PY=${PY:-python3}
BASE=${BASE:-.carry/minilm}
DATA=${DATA:-.carry/newsmtsc}
SEEDS=${SEEDS:-1 2 3}
RUNS=${RUNS:-/tmp/stance_runs}
OUT=${OUT:-training/runs/stance_out}
LIMIT_S=${LIMIT_S:-480}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
mkdir -p "$RUNS/logs" "$OUT"
start=$(date +%s)
names=()
for spec in "$@"; do
  name=${spec%%=*}
  args=${spec#*=}
  names+=("$name")
  for s in $SEEDS; do
    # shellcheck disable=SC2086  # args is a list of options
    timeout "$LIMIT_S" "$PY" -m training.stance.train fit --seeds "$s" --base "$BASE" --data-dir "$DATA" \
      --out "$RUNS/$name" $args >"$RUNS/logs/$name.s$s.log" 2>&1 &
  done
done
wait
echo "training done after $(( $(date +%s) - start )) s"
for name in "${names[@]}"; do
  runs=$(ls -d "$RUNS/$name"/seed*/ 2>/dev/null | while read -r d; do [ -f "$d/model.safetensors" ] && echo "$d"; done)
  # shellcheck disable=SC2086
  [ -n "$runs" ] && "$PY" -m training.stance.train soup --runs $runs --out "$RUNS/$name/soup" >"$RUNS/logs/$name.soup.log" 2>&1 &
done
wait
grep -h "holdout F1\|soup of\|Error\|error" "$RUNS"/logs/*.log | grep -v "epoch [1-9]:" | tail -n 80
"$PY" -m training.stance.train summary --runs-dir "$RUNS" --json "$OUT/summary.json"
best=$("$PY" -c "
import json, sys
t = json.load(open('$OUT/summary.json'))
best = max((k for k in t if 'soup' in t[k]), key=lambda k: t[k]['soup']['holdout']['macro_f1'])
print(best)")
echo "best by held-out soup F1: $best"
tar czf "$OUT/runs.tgz" -C "$RUNS" --exclude='*.safetensors' .
if [ -n "$best" ] && [ -f "$RUNS/$best/soup/model.safetensors" ]; then
  cp "$RUNS/$best/soup/result.json" "$OUT/soup_result.json"
  cp "$RUNS/$best/soup/config.json" "$OUT/soup_config.json"
  split -b 15M "$RUNS/$best/soup/model.safetensors" "$OUT/soup.safetensors.part-"
fi
echo "all done after $(( $(date +%s) - start )) s"
ls -la "$OUT"
