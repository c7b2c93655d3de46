#!/usr/bin/env bash
# Quick start: install what is missing, build, and run the main job on the bundled model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps.sh
. .ci/env.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
M=models/stories260K
TEXT=../shared/data/text/stories260K-samples/eval.txt
[ -f "$TEXT" ] || TEXT=$M/expected_greedy_t0_n200.txt
echo "== generate (greedy, 200 tokens) =="
./build/shardpress generate --model $M --steps 200
echo "== eval on 2 ranks =="
mpirun -n 2 ./build/shardpress eval --model $M --text "$TEXT" --ctx 256
