#!/usr/bin/env bash
# device_check.sh — the prepared run of issue 14 on a GPU machine, in one call (about 5 min):
#   1. build: cmake -DSP_CUDA=ON in build-dev (Release, only the programs below), or, when the
#      image lacks shardpress's libraries, the bundle that bench/device_prepare.sh --bundle
#      made here (.devdata/bundle.tar.xz)
#   2. test_cuda and test_cuda_kernels: the CUDA kernels against the CPU path (must pass, not skip)
#   3. bench/run_gptq.sh --cuda --no-doc: GPTQ 4096² vs the GPU's cublasSgemm, the 70B down_proj
#   4. the bundled model (models/stories260K): quantize --device cuda and --device cpu, eval of
#      both containers and of the dense model on both devices (ppl, KL, layer error)
#   5. a synthetic 7B-shaped model, 2 layers (bench/sp_synth_model: hidden 4096, intermediate
#      11008, 32 heads), quantized on cuda and on cpu (8 windows of 1024): time, layer error
# Figures go to stdout and to $OUT (the device tool's output folder; /tmp/sp-device-out when
# unset): device_check.log (everything), summary.txt (the figures), gptq_cuda.txt.
#
# Run from this machine (after bench/device_prepare.sh [--bundle]):
#   device run: command "bash bench/device_check.sh", carry [".devdata"], timeout_s 560
# Testing the script itself on a CPU machine: SP_DEVICE_CHECK_SMOKE=1 skips steps 3 and 5 and
# makes step 4 small; SP_DEVICE_CHECK_BUNDLE=1 uses the bundle even where cmake would work.
set -uo pipefail
SMOKE=${SP_DEVICE_CHECK_SMOKE:-0}
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/sp-device-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/device_check.log") 2>&1
T0=$(date +%s)
SUM=$OUT/summary.txt
: >"$SUM"
step() { echo; echo "== [$(($(date +%s) - T0)) s] $*"; }
note() { echo "$*" | tee -a "$SUM"; }
fail=0
check() { local what=$1; shift; if "$@"; then note "PASS $what"; else note "FAIL $what (rc $?)"; fail=1; fi; }

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_ess_singleton_isolated=1
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-1048576}
NP=$(nproc)
step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee -a "$SUM"
note "cpus $NP; $(uname -r); nvcc: $(/usr/local/cuda/bin/nvcc --version 2>/dev/null | tail -1)"

# ---- 1. build ------------------------------------------------------------------------------
step "build"
BIN=""
TESTS=""
if [[ ${SP_DEVICE_CHECK_BUNDLE:-0} != 1 && -x /usr/local/cuda/bin/nvcc ]] && cmake -S . -B build-dev -DCMAKE_BUILD_TYPE=Release -DSP_CUDA=ON \
    -DSP_TESTS=ON -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc >"$OUT/cmake.log" 2>&1; then
  if cmake --build build-dev -j"$NP" --target shardpress test_cuda test_cuda_kernels \
      bench_gptq_cuda sp_synth_model >"$OUT/build.log" 2>&1; then
    BIN=$ROOT/build-dev TESTS=$ROOT/build-dev/tests
    note "build: native (cmake -DSP_CUDA=ON) in $(($(date +%s) - T0)) s"
  else
    note "build: native build failed (see build.log)"; tail -30 "$OUT/build.log"
  fi
elif [[ ${SP_DEVICE_CHECK_BUNDLE:-0} == 1 ]]; then
  note "build: skipped (SP_DEVICE_CHECK_BUNDLE=1)"
else
  note "build: cmake configure failed here (missing libraries?), see cmake.log"; tail -15 "$OUT/cmake.log"
fi
if [[ -z $BIN && -f .devdata/bundle.tar.xz ]]; then
  B=/tmp/sp-bundle
  rm -rf "$B"; mkdir -p "$B"
  tar -C "$B" -xJf .devdata/bundle.tar.xz
  # The bundle's libraries first, then the device's own CUDA libraries.
  export LD_LIBRARY_PATH="$B/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
  export OPAL_PREFIX=$B OPAL_PKGLIBDIR=$B/ompi OPAL_PKGDATADIR=$B/share/openmpi \
    OPAL_SYSCONFDIR=$B/etc/openmpi OMPI_MCA_mca_base_component_path=$B/ompi \
    PMIX_MCA_mca_base_component_path=$B/pmix PMIX_INSTALL_PREFIX=$B
  BIN=$B/bin TESTS=$B/bin
  note "build: carried bundle (.devdata/bundle.tar.xz, built on the CPU machine)"
fi
[[ -n $BIN ]] || { note "FAIL no build and no bundle: nothing to run"; exit 1; }
SPB=$BIN/shardpress
"$SPB" --version | tee -a "$SUM"

CAL=.devdata/calib.txt EVT=.devdata/eval.txt
[[ -f $CAL ]] || { CAL=docs/architecture.md; EVT=README.md; note "texts: .devdata missing, using $CAL / $EVT"; }
W=$(mktemp -d /tmp/sp-dev.XXXXXX)

# ---- 2. unit tests against the CPU -----------------------------------------------------------
step "unit tests"
check "test_cuda" "$TESTS/test_cuda"
"$TESTS/test_cuda_kernels" | tee "$OUT/test_cuda_kernels.txt"
rc=${PIPESTATUS[0]}
grep -E "^(device|linear|hessian|gptq)" "$OUT/test_cuda_kernels.txt" >>"$SUM"
if [[ $rc -eq 0 ]]; then note "PASS test_cuda_kernels"; else note "FAIL test_cuda_kernels (rc $rc; 77 = skipped: no GPU seen)"; fail=1; fi

# ---- 3. GPTQ kernel: 4096² and the 70B down_proj (first: the issue's figures) -------------
if [[ $SMOKE != 1 ]]; then
  step "bench/run_gptq.sh --cuda"
  if [[ -x $BIN/bench_gptq_cuda && $BIN != "$ROOT/build-dev" ]]; then
    timeout 240 "$BIN/bench_gptq_cuda" | tee "$OUT/gptq_cuda.txt"   # bundle: prebuilt
  else
    SP_BUILD_DIR=$ROOT/build-dev timeout 240 bash bench/run_gptq.sh --cuda --no-doc | tee "$OUT/gptq_cuda.txt"
  fi
  grep -E "^(device|hessian|GPTQ|  same H)" "$OUT/gptq_cuda.txt" >>"$SUM"
fi

# ---- 4. the bundled model -----------------------------------------------------------------------
step "stories260K: quantize and eval on cuda and cpu"
M=models/stories260K
QO="--bits 4 --group-size 32 --nsamples 64 --ctx 256 --json"
[[ $SMOKE == 1 ]] && QO="--bits 4 --group-size 32 --nsamples 8 --ctx 128 --json"
for d in cuda cpu; do
  t=$(date +%s.%N)
  # shellcheck disable=SC2086
  "$SPB" quantize --model $M --calib "$CAL" --out "$W/q-$d" --device $d $QO >"$W/q-$d.json"
  check "quantize stories260K --device $d" test -f "$W/q-$d/model.sp.h5"
  note "quantize $d: $(python3 -c "import json,sys;j=json.load(open('$W/q-$d.json'));print('%.2f s, layer error %.6e'%(j['seconds'],j['mean_rel_layer_error']))" 2>/dev/null) (wall $(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $t}") s)"
done
cmp -s "$W/q-cuda/model.sp.h5" "$W/q-cpu/model.sp.h5" && note "containers cuda and cpu: identical bytes" \
  || note "containers cuda and cpu: differ (expected: last-bit differences flip a few codes)"
"$SPB" eval --model $M --text "$EVT" --ctx 256 --device cpu --save-logits "$W/ref.lg" --json >"$W/e-dense-cpu.json"
"$SPB" eval --model $M --text "$EVT" --ctx 256 --device cuda --kl-base "$W/ref.lg" --json >"$W/e-dense-cuda.json"
for d in cuda cpu; do
  "$SPB" eval --model "$W/q-$d" --text "$EVT" --ctx 256 --device cuda --kl-base "$W/ref.lg" --json >"$W/e-q-$d.json"
done
for f in e-dense-cpu e-dense-cuda e-q-cuda e-q-cpu; do
  note "eval $f: $(python3 -c "import json;j=json.load(open('$W/$f.json'));print('ppl %.6f kl %s tokens/s %.0f'%(j['ppl'],j.get('kl','-'),j.get('tokens_per_s',0)))" 2>/dev/null || cat "$W/$f.json")"
done
check "eval on cuda ran" test -s "$W/e-q-cuda.json"

if [[ $SMOKE == 1 ]]; then
  note "smoke run: steps 3 and 5 skipped"; note "total $(($(date +%s) - T0)) s"; rm -rf "$W"; exit $fail
fi

# ---- 5. a synthetic 7B-shaped model, two layers (last: the longest; timeouts) ---------------
step "synthetic 7B-shaped model (2 layers)"
"$BIN/sp_synth_model" --out "$W/m7b" --hidden 4096 --intermediate 11008 --layers 2 --heads 32 \
  --kv-heads 32 --vocab 512 --dtype bf16 --max-pos 4096 --seed 1 >/dev/null
for d in cuda cpu; do
  t=$(date +%s.%N)
  timeout 200 "$SPB" quantize --model "$W/m7b" --calib "$CAL" --out "$W/q7-$d" --device $d \
    --bits 4 --nsamples 8 --ctx 1024 --json >"$W/q7-$d.json"
  check "quantize 7B-shaped --device $d" test -f "$W/q7-$d/model.sp.h5"
  note "7B-shaped $d: wall $(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $t}") s; $(python3 -c "import json;j=json.load(open('$W/q7-$d.json'));p=j['phase_seconds'];print('hessian %.1f gptq %.1f propagate %.1f s, layer error %.6e, peak RSS %.0f MB'%(p['hessian'],p['gptq'],p['propagate'],j['mean_rel_layer_error'],j['peak_rss_mb_max']))" 2>/dev/null)"
done

step "done"
note "total $(($(date +%s) - T0)) s; $([[ $fail -eq 0 ]] && echo 'all checks passed' || echo 'SOME CHECKS FAILED')"
rm -rf "$W"
exit $fail
