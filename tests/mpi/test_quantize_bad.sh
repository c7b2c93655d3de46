#!/usr/bin/env bash
# Bad input to quantize, one case per run ($1): non-zero exit, one line naming the problem,
# and no output directory that looks complete.
. "$(dirname "$0")/lib.sh"
M="$SP_MODEL_DIR"; CAL="$SP_DATA_DIR/text/stories260K-samples/calib.txt"
OUT="$WORK/out"
q() { "$SP_BIN" quantize --model "$1" --calib "$2" --out "$OUT" --group-size 32 --nsamples 4 --ctx 64 "${@:3}"; }
no_output() { [ ! -e "$OUT" ] || fail "output directory $OUT exists after a failure"; [ ! -e "$OUT.partial" ] || fail "partial output left behind"; }
# as_user CMD...: CMD with file permissions enforced (root normally ignores them: its
# CAP_DAC_OVERRIDE is dropped for the command)
as_user() {
  if [ "$(id -u)" -ne 0 ]; then "$@"; return; fi
  capsh --drop=cap_dac_override,cap_dac_read_search -- -c 'exec "$0" "$@"' "$@"
}
case "$1" in
  ckpt_readonly)
    # issue 21: the real cause and the path where it happened, not "No such file or directory"
    mkdir "$WORK/ro"; chmod 555 "$WORK/ro"
    expect_error "^shardpress: error: $WORK/ro/ck: cannot create the checkpoint directory: Permission denied\$" \
      as_user "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$OUT" --nsamples 4 --ctx 64 --checkpoint-dir "$WORK/ro/ck"
    no_output
    expect_error "^shardpress: error: $WORK/ro: the checkpoint directory is not writable: Permission denied\$" \
      as_user "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$OUT" --nsamples 4 --ctx 64 --checkpoint-dir "$WORK/ro"
    no_output
    [ -z "$(ls -A "$WORK/ro")" ] || fail "files left in the read-only directory" ;;
  memory)
    # issue 21: 16M windows of 512 tokens cannot fit anywhere; quantize refuses before it
    # starts, with the plan's number. Independent checks: the need is at least the hidden
    # states alone (S·T·D·4 bytes, D = 64), the available figure is MemAvailable read here.
    # (ulimit -v: code that ignored the plan would fail fast instead of eating the machine; not
    # under ASan, whose shadow memory is terabytes of address space.)
    rc=0; ([ "${SP_SANITIZED:-0}" = 1 ] || ulimit -v 3000000; "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$OUT" \
      --nsamples 16000000 --ctx 512 >/dev/null 2>"$WORK/err") || rc=$?
    [ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "expected a clean refusal, rc=$rc"
    [ "$(wc -l <"$WORK/err")" -eq 1 ] || { cat "$WORK/err"; fail "expected one line"; }
    python3 - "$WORK/err" <<'PY'
import re, sys
msg = open(sys.argv[1]).read()
m = re.fullmatch(r"shardpress: error: quantize: --nsamples 16000000 --ctx 512 needs ([0-9.]+) GiB "
                 r"per rank \(plan's prediction, peak at [a-z]+\), but ([0-9.]+) GiB is available per "
                 r"rank \(MemAvailable / ranks on the node\); at most --nsamples ([0-9]+) fits"
                 r"(, or use [0-9]+ ranks)? \(see shardpress plan\)\n", msg)
assert m, msg
need, avail, fit = float(m[1]), float(m[2]), int(m[3])
states = 16e6 * 512 * 64 * 4 / 2**30
assert need >= states, (need, states)
kb = [int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemAvailable:")][0]
assert abs(avail - kb / 2**20) <= 0.25 * kb / 2**20 + 0.5, (avail, kb)
assert 0 < fit and fit * 512 * 64 * 4 / 2**30 <= avail, (fit, avail)
print("ok:", msg.strip())
PY
    no_output ;;
  short_calib)
    echo "Once upon a time." >"$WORK/short.txt"
    expect_error 'short\.txt.*(shorter|window)' q "$M" "$WORK/short.txt"; no_output ;;
  bits_range)
    expect_error '\-\-bits.*(2\.\.8|outside)' q "$M" "$CAL" --bits 9; no_output
    expect_error '\-\-bits.*(2\.\.8|outside)' q "$M" "$CAL" --bits 1; no_output ;;
  group_size)
    expect_error '\-\-group-size' q "$M" "$CAL" --group-size 0; no_output
    expect_error '\-\-group-size' q "$M" "$CAL" --group-size -2; no_output ;;
  nan_weight)
    mkdir -p "$WORK/m"; cp "$M"/config.json "$M"/tokenizer.json "$M"/model.safetensors "$WORK/m/"; chmod u+w "$WORK/m"/*
    python3 - "$WORK/m/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8+n]); off = h["model.layers.3.mlp.down_proj.weight"]["data_offsets"][0] + 8 + n + 4*77
b[off:off+4] = struct.pack("<f", float("nan")); open(p, "wb").write(b)
PY
    expect_error 'model\.layers\.3\.mlp\.down_proj\.weight.*(NaN|Inf|non-finite)' q "$WORK/m" "$CAL"; no_output ;;
  out_exists)
    mkdir -p "$OUT"; touch "$OUT/keep"
    expect_error 'out.*(exists|--force)' q "$M" "$CAL"
    [ -e "$OUT/keep" ] || fail "existing output was touched" ;;
  mpi_short_calib)
    echo "Once upon a time." >"$WORK/short.txt"
    rc=0; timeout 120 $SP_MPIEXEC -n 2 "$SP_BIN" quantize --model "$M" --calib "$WORK/short.txt" --out "$OUT" --ctx 64 2>"$WORK/err" || rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "expected a clean failure on 2 ranks, rc=$rc"
    grep -q 'short\.txt' "$WORK/err" || { cat "$WORK/err"; fail "message does not name the file"; }
    no_output ;;
  *) fail "unknown case $1" ;;
esac
