#!/usr/bin/env bash
# The whole job on real images, through the ens CLI: what a competitor does in the last week.
# Data: scikit-learn's handwritten digits as a 10-class competition (examples/digits/prepare.py).
# Re-running is cheap: training, predictions and exports are cached; blends are refitted.
set -euo pipefail
cd "$(dirname "$0")/../.."
ENS="${ENS:-.venv/bin/ens}"
PY="${PY:-.venv/bin/python}"
W="${WORK:-examples/digits/work}"
PREPARE_ARGS="${PREPARE_ARGS:-}"
MODELS="${MODELS:-models}"  # the model cards (their checkpoint paths point into examples/digits/work)
CARDS=("$MODELS/digits_resnet_s0.toml" "$MODELS/digits_resnet_s1.toml")
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
start=$(date +%s)

step "1. data (1797 real 8x8 digits -> 32x32 PNGs), 5 folds, tiny timm models trained per fold"
# shellcheck disable=SC2086
$PY examples/digits/prepare.py --work "$W" $PREPARE_ARGS

step "2. folds: class balance and leakage of the fold column"
$ENS folds --data "$W/train.csv" --check

step "3. choose TTA by OOF: predict one model with every view kept, score each view and merge"
$ENS predict --card "$MODELS/digits_resnet_s0.toml" --data "$W/train.csv" --split oof \
    --tta hflip,center_crop --save-views --out "$W/tta_probe" --quiet
$ENS oof-report --labels "$W/train.csv" "$W/tta_probe/resnet_s0" --json "$W/tta_probe/report.json" --n-boot 200 --force \
    | sed -n '/TTA views/,$p'
TTA=$($PY - "$W/tta_probe/report.json" <<'PY'
import json, sys
ranked = json.load(open(sys.argv[1]))["tta"]["resnet_s0"]            # best macro-F1 first
best = next(r["views"] for r in ranked if "identity" in r["views"])  # identity is always in a --tta set
print(",".join(v for v in best if v != "identity") or "none")
PY
)
echo "TTA chosen by OOF: --tta $TTA"

step "4. SWA: average the last 3 epochs of resnet_s0 per fold, without and with a BatchNorm refresh"
snaps="$W/checkpoints/resnet_s0_epochs/fold{fold}_epoch*.pth"
missing() {  # a fold with snapshots but no averaged checkpoint under $W/checkpoints/$1 yet
    local f k
    for f in "$W"/checkpoints/resnet_s0_epochs/fold*_epoch*.pth; do
        k=${f##*/fold}; k=${k%%_*}
        [ -e "$W/checkpoints/$1/fold$k.safetensors" ] || return 0
    done
    return 1
}
if compgen -G "${snaps/\{fold\}/*}" > /dev/null; then
    # every fold in one command: {fold} in --glob and --out (one start-up of torch, not one per fold)
    missing resnet_swa && $ENS swa --glob "$snaps" --card "$MODELS/digits_resnet_swa.toml" \
        --out "$W/checkpoints/resnet_swa/fold{fold}.safetensors" --force --quiet > /dev/null
    # BN statistics of averaged weights are stale; refresh them on the rows each fold's model trained on
    missing resnet_swa_bn && $ENS swa --glob "$snaps" --card "$MODELS/digits_resnet_swa_bn.toml" \
        --bn-data "$W/train.csv" --workers 0 --out "$W/checkpoints/resnet_swa_bn/fold{fold}.safetensors" --force --quiet > /dev/null
    CARDS+=("$MODELS/digits_resnet_swa.toml" "$MODELS/digits_resnet_swa_bn.toml")
fi

step "5. export effnet_s0 to ONNX (parity-checked against torch); it is predicted through ONNX Runtime"
[ -e "$W/onnx/effnet_s0/effnet_s0.toml" ] || $ENS export-onnx --card "$MODELS/digits_effnet_s0.toml" --out "$W/onnx/effnet_s0"
CARDS+=("$W/onnx/effnet_s0/effnet_s0.toml")

step "6. predict OOF (fold k model on fold k rows) and test (mean of the fold models), decoded once for all models"
card_args=(); for c in "${CARDS[@]}"; do card_args+=(--card "$c"); done
$ENS predict "${card_args[@]}" --data "$W/train.csv" --split oof --tta "$TTA" --out "$W/preds"
$ENS predict "${card_args[@]}" --data "$W/test.csv" --split test --tta "$TTA" --out "$W/preds"

step "7. OOF report: every model, seed average, CI, per fold, per class, confusion, correlation, plots"
$ENS oof-report --labels "$W/train.csv" "$W"/preds/* --plots "$W/report" --json "$W/report/report.json" --force

step "8. blends, each scored in-sample and nested (fit on 4 folds, score the 5th), each a submission"
rm -f "$W/ledger.db"  # a fresh ledger for each run of the example
for spec in "soft:" "hard:" "weighted:" "greedy:" "weighted_bias:--tune-bias" "seed_soft:--seed-average"; do
    name=${spec%%:*}; extra=${spec#*:}; method=${name%%_*}
    [ "$name" = seed_soft ] && method=soft
    # shellcheck disable=SC2086
    $ENS blend --method "$method" $extra --labels "$W/train.csv" "$W"/preds/* --out "$W/blends/$name" \
        --submission "$W/submissions/$name.csv" --ledger "$W/ledger.db" --note "digits $name" --force
done

step "9. the submission ledger and the final two picks (best honest estimate + the best hedge)"
$ENS submissions list --ledger "$W/ledger.db"
$ENS select --n 2 --ledger "$W/ledger.db" --n-boot 1000   # the labels file the blends recorded

step "10. the private leaderboard: held-back test labels, scored independently with sklearn"
$PY examples/digits/private_score.py "$W"

step "done in $(( $(date +%s) - start )) s; everything is under $W"
echo "  predictions  $W/preds/<model>/{oof,test,test_fold<k>}.csv (+ .json sidecars)"
echo "  report       $W/report/*.png and report.json"
echo "  blends       $W/blends/<name>/{oof.csv,test.csv,recipe.json}"
echo "  submissions  $W/submissions/<name>.csv, ledger $W/ledger.db"
