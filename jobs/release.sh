#!/usr/bin/env bash
# The release step, in one place: score a finished run once on the saved TEST split,
# export it with those metrics, score it on MIT-BIH (external), and regenerate what
# derives from the release (explain pages, training curves). Every test-split scoring
# appends a line to results/test_split_log.csv.
#   bash jobs/release.sh RUN_DIR PREPARED NAME
# e.g. bash jobs/release.sh /work/runs/release_s42 /tmp/prep_full resnet_stages
set -euo pipefail
RUN=$1 PREPARED=$2 NAME=$3
DATA=${ECG_RAY_DATA:-../shared/data}
CINC=$DATA/cinc2017/training2017
REL=results/release
ECG=${ECG:-.venv/bin/ecg-ray}
mkdir -p $REL results/external results/training/$NAME
$ECG evaluate --checkpoint "$RUN" --data-dir "$CINC" --records-from-split test --prepared "$PREPARED" \
    --predictions $REL/${NAME}_test_predictions.csv --reliability $REL/${NAME}_reliability_test.png \
    > $REL/${NAME}_test_metrics.json
rm -rf $REL/$NAME
$ECG export --checkpoint "$RUN" --metrics $REL/${NAME}_test_metrics.json --out $REL/$NAME --verify-record "$CINC/A00005"
$ECG evaluate --checkpoint $REL/$NAME --source mitbih --data-dir "$DATA/mitdb" \
    --predictions results/external/mitbih_predictions.csv --reliability results/external/mitbih_reliability.png \
    > results/external/mitbih.json
cp "$RUN"/history.json "$RUN"/results.json results/training/$NAME/
.venv/bin/python -c "
import json, sys
from ecg_ray.plots import save, training_curves_figure
save(training_curves_figure(json.load(open('results/training/$NAME/history.json')),
                            title='$NAME: default recipe, seed 42, full training split'),
     'results/training/$NAME/curves.png')"
$ECG explain --checkpoint $REL/$NAME --record "$CINC/A00005" --out results/explain/A00005_AF.png
$ECG explain --checkpoint $REL/$NAME --record "$CINC/A00010" --out results/explain/A00010_normal.png
rm -rf results/explain/cases
$ECG explain --checkpoint $REL/$NAME --data-dir "$CINC" --cases 2 --records-from-split test \
    --prepared "$PREPARED" --out results/explain/cases
