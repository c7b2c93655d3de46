#!/usr/bin/env bash
# Issue 21 part 6: the help texts name what the code implements.
#   - `export --format gguf --help` lists every GGUF type of kernels/sp_gtype.h's enum (read
#     from the header here, not from the program), and nothing else; the quantized ones are
#     the types quantize --format gguf:TYPE takes, and each listed type is accepted by
#     `export --type`'s parser (an unknown one is refused with the same list);
#   - the top-level help says export writes GPTQ and GGUF, and every command it lists answers
#     `<command> --help` with its usage.
. "$(dirname "$0")/lib.sh"
HDR="$SP_SOURCE_DIR/kernels/sp_gtype.h"
mapfile -t ALL < <(sed -n '/^enum {/,/^};/p' "$HDR" | grep -o 'SP_GT_[A-Z0-9_]*' | sed 's/^SP_GT_//')
[ "${#ALL[@]}" -ge 12 ] || fail "read only ${#ALL[@]} types from $HDR"
"$SP_BIN" export --format gguf --help >"$WORK/h"
line() { grep -E "^$1" "$WORK/h" | sed -E "s/^$1 *//; s/\.$//" | tr ' ' '\n' | sort; }
want_all=$(printf '%s\n' "${ALL[@]}" | sort)
want_q=$(printf '%s\n' "${ALL[@]}" | grep -v '^F' | sort)
[ "$(line 'Types:')" = "$want_all" ] || fail "export --format gguf --help types: $(line 'Types:' | tr '\n' ' ') != ${ALL[*]}"
[ "$(line 'Quantized types \(quantize --format gguf:TYPE, --levels\):')" = "$want_q" ] \
  || fail "export --format gguf --help quantized types differ from $(echo $want_q)"
for t in "${ALL[@]}"; do
  # the option parser knows every listed type: with the type accepted, the next check to fail is
  # the missing --out, not the type
  expect_error 'export: --model and --out are required' "$SP_BIN" export --format gguf --type "$t" --model x
done
msg=$(expect_error "is not a GGUF type" "$SP_BIN" export --format gguf --type Q9_9 --model x --out y)
for t in "${ALL[@]}"; do grep -q "$t" <<<"$msg" || fail "the unknown-type message does not list $t"; done
# quantize --format gguf:T takes every quantized type, and refuses F16 naming them all
for t in $want_q; do
  expect_error '^shardpress: error: quantize: --model is required$' "$SP_BIN" quantize --format "gguf:$t"
done
msg=$(expect_error "'F16' is not a quantized GGUF type" "$SP_BIN" quantize --format gguf:F16)
for t in $want_q; do grep -q "$t" <<<"$msg" || fail "the --format message does not list $t"; done
# top level
"$SP_BIN" --help >"$WORK/top"
grep -Eq '^  export .*GPTQ.*GGUF' "$WORK/top" || fail "top-level help: export line does not say GPTQ and GGUF: $(grep export "$WORK/top")"
for c in $(sed -n '/^commands:/,/^$/p' "$WORK/top" | awk 'NF>1{print $1}'); do
  "$SP_BIN" "$c" --help >"$WORK/c" 2>&1 || fail "$c --help failed"
  grep -q '^usage: .*shardpress' "$WORK/c" || fail "$c --help has no usage line"
done
echo "ok: help lists ${#ALL[@]} types; every command has --help"
