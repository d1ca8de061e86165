#!/usr/bin/env bash
# The multi-label job end to end, through the ens CLI: sigmoid models, per-class thresholds, set submissions.
# Data: mosaics of scikit-learn's digits, each labelled by the SET of digits it shows (`3|7`),
# built by examples/mosaics/prepare.py. Re-running is cheap: data, folds, training and predictions
# are cached; blends are refitted.
set -euo pipefail
cd "$(dirname "$0")/../.."
ENS="${ENS:-.venv/bin/ens}"
PY="${PY:-.venv/bin/python}"
W="${WORK:-examples/mosaics/work}"
PREPARE_ARGS="${PREPARE_ARGS:-}"  # e.g. "--n-train 600 --n-test 200 --epochs 1" for a quick run
FOLDS="${FOLDS:-5}"
N_BOOT="${N_BOOT:-1000}"
# the blends: NAME:FLAGS, the method is NAME's first word; *_thr tune one threshold per class, *_gthr one for all
BLENDS="${BLENDS:-soft: weighted: soft_thr:--tune-thresholds=per-class weighted_thr:--tune-thresholds=per-class weighted_gthr:--tune-thresholds=global}"
MODELS="${MODELS:-models}"  # the model cards (their checkpoint paths point into examples/mosaics/work)
CARDS=("$MODELS/mosaic_resnet_s0.toml" "$MODELS/mosaic_resnet_s1.toml" "$MODELS/mosaic_effnet_s0.toml")
step() { printf '\n\033[1m== %s\033[0m (at %d s)\n' "$*" "$(( $(date +%s) - start ))"; }
start=$(date +%s)

step "1. data: 32x32 mosaics of 1-4 real digits on a 2x2 grid, labelled by the set of digits shown"
# shellcheck disable=SC2086
$PY examples/mosaics/prepare.py data --work "$W" $PREPARE_ARGS
head -4 "$W/mosaics.csv"

step "2. folds: iterative stratification (Sechidis et al.) balances every class's positives over the folds"
[ -e "$W/train.csv" ] || $ENS folds --method multilabel-stratified --n-splits "$FOLDS" \
    --data "$W/mosaics.csv" --out "$W/train.csv" --quiet > /dev/null
$ENS folds --data "$W/train.csv" --check

step "3. tiny timm models per fold (10 sigmoid outputs, BCEWithLogitsLoss), trained on the CLI's folds"
# shellcheck disable=SC2086
$PY examples/mosaics/prepare.py train --work "$W" $PREPARE_ARGS

step "4. choose TTA by OOF: predict one model with every view kept, score each view and merge (per class)"
$ENS predict --card "$MODELS/mosaic_resnet_s0.toml" --data "$W/train.csv" --split oof \
    --tta hflip,scale --save-views --out "$W/tta_probe" --quiet
$ENS oof-report --labels "$W/train.csv" "$W/tta_probe/resnet_s0" --json "$W/tta_probe/report.json" --n-boot 200 --force \
    | sed -n '/TTA views/,$p'
TTA=$($PY - "$W/tta_probe/report.json" <<'PY'
import json, sys
ranked = json.load(open(sys.argv[1]))["tta"]["resnet_s0"]            # best metric first
best = next(r["views"] for r in ranked if "identity" in r["views"])  # identity is always in a --tta set
print(",".join(v for v in best if v != "identity") or "none")
PY
)
echo "TTA chosen by OOF: --tta $TTA"

step "5. predict OOF and test: each model's logits through a sigmoid, TTA views merged per class"
card_args=(); for c in "${CARDS[@]}"; do card_args+=(--card "$c"); done
$ENS predict "${card_args[@]}" --data "$W/train.csv" --split oof --tta "$TTA" --out "$W/preds"
$ENS predict "${card_args[@]}" --data "$W/test.csv" --split test --tta "$TTA" --out "$W/preds"

step "6. OOF report: per model macro-F1 at 0.5; per class AUC, AP, F1 at 0.5 and at the best threshold"
$ENS oof-report --labels "$W/train.csv" "$W"/preds/* --n-boot "$N_BOOT" --plots "$W/report" --json "$W/report/report.json" --force

step "7. blends at 0.5 and with tuned thresholds, each scored in-sample and nested (fit on 4 folds, score the 5th)"
rm -f "$W/ledger.db"  # a fresh ledger for each run of the example
rm -rf "$W/submissions"
names=()
for spec in $BLENDS; do
    name=${spec%%:*}; extra=${spec#*:}; method=${name%%_*}; names+=("$name")
    # shellcheck disable=SC2086
    $ENS blend --method "$method" $extra --labels "$W/train.csv" "$W"/preds/* --out "$W/blends/$name" \
        --n-boot "$N_BOOT" --submission "$W/submissions/$name.csv" --target-format labels --no-ledger --force
done
echo "a submission: each row's predicted digits joined by a space"
head -4 "$W/submissions/${names[-1]}.csv"

step "8. the submission ledger (each set submission with its recipe's scores) and the final two picks"
for name in "${names[@]}"; do
    $ENS submissions add "$W/submissions/$name.csv" --recipe "$W/blends/$name" --ledger "$W/ledger.db" \
        --note "mosaics $name" > /dev/null
done
$ENS submissions list --ledger "$W/ledger.db"
$ENS select --n 2 --ledger "$W/ledger.db" --n-boot "$N_BOOT"   # the labels file the blends recorded

step "9. the private leaderboard: held-back test labels, scored independently with sklearn"
$PY examples/mosaics/private_score.py "$W"

step "done in $(( $(date +%s) - start )) s; everything is under $W"
echo "  predictions  $W/preds/<model>/{oof,test,test_fold<k>}.csv (+ .json sidecars, task multilabel)"
echo "  report       $W/report/*.png and report.json"
echo "  blends       $W/blends/<name>/{oof.csv,test.csv,recipe.json} (thresholds in the recipe)"
echo "  submissions  $W/submissions/<name>.csv, ledger $W/ledger.db"
