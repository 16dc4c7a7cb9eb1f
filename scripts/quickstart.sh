#!/usr/bin/env bash
# The main pipeline on embedded data, as far as it exists (grows with each stage).
set -euo pipefail
syncopt --version
syncopt models --preset all
