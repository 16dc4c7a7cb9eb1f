#!/usr/bin/env bash
# The quickstart: recipes/quickstart.yaml on the embedded synthetic data — train a tiny fcn teacher,
# distil it into the mobile_2d student, prune, INT8 TFLite, export ONNX/TFLite, parity, bench, an
# Android bundle (verified) and a CI gate — then sync a real clip with the student and with the
# shipped real-video model.
# Rerunning skips every finished stage (RUN/<stage>/stage.json); an interrupted run resumes.
set -euo pipefail
RUN=${RUN:-runs/quickstart}

syncopt --version
syncopt run recipes/quickstart.yaml --out "$RUN"
syncopt sync tests/fixtures/example.avi --crop full --weights "$RUN/prune" --plot "$RUN/example_sync.png"
# The shipped real-video model (fcn_lips, face mesh + MFCC); SyncNet publishes +3 frames for this clip.
syncopt sync tests/fixtures/example.avi --plot "$RUN/example_sync_real.png"
echo "quickstart done: see $RUN/ (one folder per stage with its stage.json, summary.json, bundle/, gate/report.xml, example_sync.png)"
