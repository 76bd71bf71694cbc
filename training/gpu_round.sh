#!/usr/bin/env bash
# One fine-tuning round on a lent GPU machine from a feature pack, sized to a time budget.
#   training/gpu_round.sh INPUTS_DIR OUT_DIR BUDGET_S [--set KEY=VALUE ...]
# INPUTS_DIR is what `make gpu-inputs` (training/gpu_inputs.py) wrote: train.pack, dev.jsonl + dev/,
# init.ckpt. Run from the repository root with the project importable (PYTHONPATH) on that machine's
# python3 (or $PYTHON); --set options reach the run's config (e.g. --set labels=phone for a phone round).
# 1. A 40-step first leg measures steps/s; it is still inside the warmup, so the schedule loses nothing.
# 2. The run resumes with max_steps set so that training and its dev evaluations end inside the budget.
# 2 keeps RESERVE_S (default 60) seconds for step 3; CONFIG names another recipe (the tests use tiny.yaml).
# 3. The last three kept checkpoints are averaged. best.ckpt and averaged.ckpt land in OUT_DIR in
#    15 MB parts (`cat NAME.part* > NAME` joins them), beside metrics.jsonl and train_config.yaml.
set -euo pipefail
inputs=$1 out=$2 budget=$3
shift 3
start=$(date +%s)
run=${RUN_DIR:-/tmp/gpu-round}
config=${CONFIG:-training/configs/gpu-pack-finetune.yaml}
python=${PYTHON:-python3}
speechlabel() { "$python" -m service.cli "$@"; }
speechlabel train --config "$config" --train-pack "$inputs/train.pack" \
    --dev "$inputs/dev.jsonl" --out "$run" --set init_from="$inputs/init.ckpt" --set max_steps=40 --no-progress "$@"
probe_s=$(( $(date +%s) - start ))
read -r steps eval_every <<<"$("$python" - "$run/metrics.jsonl" "$probe_s" "$budget" "${RESERVE_S:-60}" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
rates = sorted(r["steps_per_s"] for r in records[1:] if "steps_per_s" in r)  # the first window holds cuDNN set-up
rate = rates[len(rates) // 2]
probe_s, budget, reserve_s = map(float, sys.argv[2:5])
evaluation_s = max(probe_s - 40 / rate, 5.0) / 2  # the first leg held two dev evaluations (and start-up)
train_s = budget - probe_s - 6 * evaluation_s - reserve_s  # the reserve: averaging and copying out
steps = 40 + max(int(rate * train_s), 10)
print(steps, max(steps // 6, 10))
print(f"{rate:.2f} steps/s, evaluation ~{evaluation_s:.0f} s: {steps} steps", file=sys.stderr)
PY
)"
# Past the budget the run is stopped (exit 124): its best and kept checkpoints stand; any other failure stops here.
limit=$(( budget - $(date +%s) + start - ${RESERVE_S:-60} * 2 / 3 ))
timeout $(( limit > 10 ? limit : 10 )) "$python" -m service.cli train --resume "$run" \
    --no-progress --set max_steps="$steps" --set eval_every="$eval_every" --set checkpoint_every="$eval_every" \
    || [ $? -eq 124 ]
mapfile -t kept < <(ls "$run"/checkpoints/step-*.ckpt | tail -3)
speechlabel average "${kept[@]}" --out "$run/averaged.ckpt"
mkdir -p "$out"
for name in best averaged; do split -b 15M -d "$run/$name.ckpt" "$out/$name.ckpt.part"; done
cp "$run/metrics.jsonl" "$run/train_config.yaml" "$out/"
echo "round done in $(( $(date +%s) - start )) s"
