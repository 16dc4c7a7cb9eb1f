#!/usr/bin/env bash
# The main pipeline on the embedded synthetic data, end to end in a few minutes on 2 CPU cores:
# list models -> train a tiny FCN -> evaluate it -> export ONNX -> parity -> sync a real clip.
set -euo pipefail
RUN=${RUN:-runs/quickstart}
mkdir -p "$RUN"

syncopt --version
syncopt models --preset all
syncopt train fcn --preset tiny --epochs 3 --train-clips 200 --val-clips 50 --out "$RUN/fcn_tiny"
syncopt evaluate "$RUN/fcn_tiny" --clips 60 --plot "$RUN/accuracy.png"
syncopt export "$RUN/fcn_tiny" --format onnx --out "$RUN/artifacts"
syncopt parity "$RUN/artifacts/fcn_tiny_fp32.onnx" --clips 4
syncopt sync tests/fixtures/example.avi --crop full --weights "$RUN/fcn_tiny" --plot "$RUN/example_sync.png"
echo "quickstart done: see $RUN/ (weights, report.json, accuracy.png, artifacts/, example_sync.png)"
