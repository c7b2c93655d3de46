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
