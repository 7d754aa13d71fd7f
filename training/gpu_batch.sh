#!/bin/bash
# One timed batch on a lent GPU machine: every seed of a scenario's segmentation runs at once (run.py scenario
# --parallel: train, tune on validation, test tables), then each run folder, without its resume checkpoint,
# packed into $OUT/<run>.tgz.
#
#   [WORKERS=2] bash training/gpu_batch.sh SCENARIO "SEEDS" SECONDS      e.g.  bash training/gpu_batch.sh C "0 1 2" 420
#
# or cross-validation (training/cross_validate.py) of several configs, all folds of all of them at once, a config
# optionally at another seed (STEM@SEED); each fold run comes back as $OUT/<run>.tgz with its weights and log but
# without its resume checkpoints and cached probabilities (8 returned files at most: 2 configs of 4 folds):
#
#   [WORKERS=1] [FOLDS=3,4] [K=5] bash training/gpu_batch.sh cv "CONFIGS" SECONDS     (K: the folds' count, default 4)
#   e.g.  bash training/gpu_batch.sh cv "seg_mixed_context seg_context@1" 470
#         K=5 bash training/gpu_batch.sh cv "seg_context_scanner_edits@1" 480     (issue 32: B at seed 1, 5 files)
#
# The machine has no internet: carry .whl/ (wheels its Python lacks: pip download --no-deps monai==1.6.1
# nibabel==5.4.2 -d .whl) and .data/emidec-lge-128 (a copy of ../shared/data/emidec-lge-128); both are in
# .git/info/exclude. Training stops SECONDS after the start, keeping each run's best model so far.
set -u
START=$(date +%s)
SCENARIO=$1; LIST=$2; SECONDS_LEFT=${3:-420}   # LIST: the seeds, or (cv) the config stems
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 LVSEG_EMIDEC_DIR=$PWD/.data/emidec-lge-128
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
mkdir -p training/runs
( while sleep 30; do echo "== $(( $(date +%s) - START )) s"; tail -qn1 training/runs/*.log training/runs/cv/*.log 2>/dev/null | cut -c1-120; done ) &
MONITOR=$!
if [ "$SCENARIO" = cv ]; then
  split_entry() {   # STEM or STEM@SEED -> $stem and the cross_validate.py arguments $seed
    stem=${1%@*}; seed=()
    if [ "$1" != "$stem" ]; then seed=(--seed "${1#*@}"); fi
  }
  # two seeds of one config would make the same folds' synthetic sets at once: one batch per seed
  stems=$(for entry in $LIST; do echo "${entry%@*}"; done)
  [ "$(echo "$stems" | sort | uniq -d)" ] && { echo "a config named twice in \"$LIST\": one seed per batch"; exit 1; }
  PIDS=""
  for entry in $LIST; do
    split_entry "$entry"
    python3 training/cross_validate.py run "training/configs/$stem.json" --folds "${K:-4}" "${seed[@]}" ${FOLDS:+--fold "$FOLDS"} --parallel \
      --device "${DEVICE:-cuda}" --workers "${WORKERS:-1}" --deadline $((START + SECONDS_LEFT)) &
    PIDS="$PIDS $!"
  done
  # shellcheck disable=SC2086
  wait $PIDS   # not the monitor
  kill $MONITOR
  for entry in $LIST; do
    split_entry "$entry"
    python3 training/cross_validate.py summary "training/configs/$stem.json" --folds "${K:-4}" "${seed[@]}"
  done
  cd training/runs/cv || exit 1
  for card in */card.json; do   # the fold runs: <stem>_cv<K>f<k>[_seed<S>], logged to <stem>_cv<K>f<k>.log
    run=$(dirname "$card")
    tar czf "$OUT/$run.tgz" --exclude='*.pt' --exclude='probs_*' "$run" "${run%_seed*}.log"
  done
  ls -la "$OUT"; echo "total $(( $(date +%s) - START )) s"
  exit 0
fi
# shellcheck disable=SC2086
python3 training/run.py scenario "$SCENARIO" --seeds $LIST --parallel --device cuda --workers "${WORKERS:-2}" --skip-pix2pix \
  --deadline $((START + SECONDS_LEFT))
echo "scenario rc $? after $(( $(date +%s) - START )) s"
kill $MONITOR
cd training/runs || exit 1
for card in */card.json; do
  run=$(dirname "$card")
  [ "$run" = pix2pix ] && continue
  # every file of the run (weights may be sharded: model.safetensors + model-<save>-2.safetensors ...) but the
  # resume checkpoints, which would take the archive past the 16 MiB a returned file may have
  tar czf "$OUT/$run.tgz" --exclude=last.pt --exclude=best.pt "$run" "$run.log"
done
ls -la "$OUT"; echo "total $(( $(date +%s) - START )) s"
