#!/usr/bin/env bash
# One bad input per invocation (the case is $1). Each must exit non-zero with one line on
# stderr naming the file and the problem, and must not crash.
. "$(dirname "$0")/lib.sh"
M="$SP_MODEL_DIR"; TEXT="$SP_DATA_DIR/text/stories260K-samples/eval.txt"
copy_model() { mkdir -p "$WORK/m"; cp "$M"/config.json "$M"/tokenizer.json "$M"/tokenizer_config.json "$M"/model.safetensors "$WORK/m/"; chmod -R u+w "$WORK/m"; }
# patch_header PYTHON: rewrite the safetensors JSON header of $WORK/m/model.safetensors
patch_header() {
  python3 - "$WORK/m/model.safetensors" "$1" <<'PY'
import json, struct, sys
p, code = sys.argv[1], sys.argv[2]
b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8+n]); data = b[8+n:]
exec(code)
hb = json.dumps(h).encode(); hb += b" " * (-len(hb) % 8)
open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + data)
PY
}
ev() { "$SP_BIN" eval --model "$WORK/m" --text "$TEXT" --ctx 64 --max-windows 2; }
case "$1" in
  truncated)
    copy_model; truncate -s 600000 "$WORK/m/model.safetensors"
    expect_error 'model\.safetensors.*(trunc|past|end|short)' ev ;;
  header_len)
    copy_model; python3 -c "
import struct; p='$WORK/m/model.safetensors'; b=bytearray(open(p,'rb').read()); b[:8]=struct.pack('<Q', 10**9); open(p,'wb').write(b)"
    expect_error 'model\.safetensors.*header' ev ;;
  overlap)
    copy_model; patch_header "
k=sorted(k for k in h if k!='__metadata__')
a,b2=h[k[0]]['data_offsets'],h[k[1]]['data_offsets']
h[k[1]]['data_offsets']=[a[0],a[0]+b2[1]-b2[0]]"
    expect_error 'model\.safetensors.*overlap' ev ;;
  dtype)
    copy_model; patch_header "h['model.norm.weight']['dtype']='I32'"
    expect_error 'model\.safetensors.*model\.norm\.weight.*(dtype|I32)' ev ;;
  shape)
    copy_model; patch_header "h['model.norm.weight']['shape']=[32,2]"
    expect_error 'model\.norm\.weight.*shape' ev ;;
  missing)
    copy_model; patch_header "del h['model.layers.2.mlp.up_proj.weight']"
    expect_error 'model\.layers\.2\.mlp\.up_proj\.weight' ev ;;
  arch)
    copy_model; python3 -c "
import json; p='$WORK/m/config.json'; c=json.load(open(p)); c['architectures']=['GPTNeoXForCausalLM']; c['model_type']='gpt_neox'; json.dump(c,open(p,'w'))"
    expect_error 'config\.json.*(architecture|GPTNeoX)' ev ;;
  empty_text)
    : >"$WORK/empty.txt"
    expect_error 'empty\.txt.*empty' "$SP_BIN" eval --model "$M" --text "$WORK/empty.txt" --ctx 64 ;;
  non_utf8)
    printf 'Once upon a time \xff\xfe there was' >"$WORK/bad.txt"
    expect_error 'bad\.txt.*UTF-8' "$SP_BIN" eval --model "$M" --text "$WORK/bad.txt" --ctx 64
    # issue 21: generate --prompt refuses what eval and tokenize refuse, before any output
    expect_error 'generate: --prompt is not valid UTF-8 at byte offset 5 \(byte 0xFF\)' \
      "$SP_BIN" generate --model "$M" --steps 2 --prompt "$(printf 'Once \xff\xfe')"
    [ ! -s "$WORK/.stdout" ] || fail "generate printed text for a non-UTF-8 prompt"
    expect_error 'tokenize: TEXT is not valid UTF-8 at byte offset 5 \(byte 0xFF\)' \
      "$SP_BIN" tokenize --model "$M" "$(printf 'Once \xff\xfe')" ;;
  short_text)
    echo "Once upon a time." >"$WORK/short.txt"
    expect_error 'short\.txt.*(shorter|window)' "$SP_BIN" eval --model "$M" --text "$WORK/short.txt" --ctx 64 ;;
  ctx_too_large)
    expect_error '(ctx|--ctx).*(512|max)' "$SP_BIN" eval --model "$M" --text "$TEXT" --ctx 1024 ;;
  mpi_bad_file)
    # A failure seen on every rank ends all of them with one message; nothing hangs.
    : >"$WORK/empty.txt"
    rc=0; timeout 120 $SP_MPIEXEC -n 2 "$SP_BIN" eval --model "$M" --text "$WORK/empty.txt" --ctx 64 2>"$WORK/err" || rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "expected a clean failure on 2 ranks, rc=$rc"
    [ "$(grep -c 'shardpress: error' "$WORK/err")" -eq 1 ] || { cat "$WORK/err"; fail "expected exactly one error line"; } ;;
  exchange_local)
    # issue 21: 'sites/0' without {rank} on 2 ranks would run both sites from one model
    python3 "$(dirname "$0")/make_sites.py" "$M" "$WORK/sites" 2 --scale 0.01
    rc=0; timeout 120 $SP_MPIEXEC -n 2 "$SP_BIN" exchange --base "$M" --local "$WORK/sites/0" \
      --state "$WORK/D" --out "$WORK/x" 2>"$WORK/err" || rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "expected a clean failure on 2 ranks, rc=$rc"
    [ "$(grep -c 'shardpress: error' "$WORK/err")" -eq 1 ] || { cat "$WORK/err"; fail "expected exactly one error line"; }
    grep -Eq "^shardpress: error: (rank 0: )?--local '$WORK/sites/0': the 2 ranks of this job would share this directory as their sites' models; name each site's with \{rank\} \(e\.g\. 'sites/\{rank\}'\)\$" "$WORK/err" \
      || fail "unexpected message: $(cat "$WORK/err")"
    [ ! -e "$WORK/x" ] && [ ! -e "$WORK/D/latest" ] || fail "a refused round wrote output or state"
    # one rank per job (--transport files) may name its site plainly
    "$SP_BIN" exchange --base "$M" --local "$WORK/sites/0" --state "$WORK/D1" --out "$WORK/y" >/dev/null \
      || fail "one rank with a plain --local was refused" ;;
  search_out)
    # issue 21: search checks --out before the search (it used to fail after all of it)
    "$SP_BIN" quantize --model "$M" --method rtn --out "$WORK/q" --bits 4 --levels 2,3,4 >/dev/null
    S=(search --model "$WORK/q" --calib "$TEXT" --target-bits 3 --ctx 64 --generations 1000)
    t0=$(date +%s)
    expect_error "^shardpress: error: search: --out $WORK/none/map\.txt cannot be written: $WORK/none/map\.txt\.tmp: cannot write: No such file or directory\$" \
      timeout 30 "$SP_BIN" "${S[@]}" --out "$WORK/none/map.txt"
    expect_error "^shardpress: error: search: --out $WORK: is a directory \(--out names the map file\)\$" \
      timeout 30 "$SP_BIN" "${S[@]}" --out "$WORK"
    [ $(( $(date +%s) - t0 )) -lt 20 ] || fail "the refusals took $(( $(date +%s) - t0 )) s: --out was not checked first"
    ls "$WORK" | grep -q 'tmp' && fail "a probe file was left: $(ls "$WORK")"; true ;;
  *) fail "unknown case $1" ;;
esac
