#!/usr/bin/env bash
# shardpress tokenize on the bundled model and the Llama 2 tokenizer (the case is $1):
#   model     --model, --tokenizer tok512.bin and --tokenizer tokenizer.json give the same ids
#             on a WikiText-2 slice (the shared data's README fact, here for the whole file);
#             BOS by default, --no-bos, the file's bytes exactly (a final newline is a token)
#   llama2    the Llama 2 tokenizer.bin (vocab size read from the file): known ids
#   pieces    --pieces with its escapes, and that they spell the ids' pieces
#   ranks     2 ranks print one line, the same as 1 rank
#   bad       bad input: one line on stderr, non-zero exit
. "$(dirname "$0")/lib.sh"
M="$SP_MODEL_DIR"; L2="$SP_DATA_DIR/tokenizers/llama2/tokenizer.bin"
WIKI="$SP_DATA_DIR/text/wikitext-2-raw/wiki.test.raw"
tok() { "$SP_BIN" tokenize "$@"; }
same() { [ "$1" = "$2" ] || fail "$3: '${1:0:200}' != '${2:0:200}'"; }

case "$1" in
  model)
    head -n 400 "$WIKI" > "$WORK/wiki.txt"
    a=$(tok --model "$M" --file "$WORK/wiki.txt")
    b=$(tok --tokenizer "$M/tok512.bin" --file "$WORK/wiki.txt")
    c=$(tok --tokenizer "$M/tokenizer.json" --file "$WORK/wiki.txt")
    same "$a" "$b" "--model vs tok512.bin"
    same "$a" "$c" "--model vs tokenizer.json"
    [ "${a%% *}" = 1 ] || fail "no BOS first: ${a:0:40}"
    n=$(echo "$a" | wc -w); [ "$n" -gt 10000 ] || fail "only $n ids for 400 lines"
    nb=$(tok --model "$M" --no-bos --file "$WORK/wiki.txt")
    same "1 $nb" "$a" "--no-bos drops exactly the BOS"
    same "$(tok --model "$M" "Once upon a time")" "1 403 407 261 378" "known ids"
    printf 'Once upon a time' > "$WORK/t1"; printf 'Once upon a time\n' > "$WORK/t2"
    same "$(tok --model "$M" --file "$WORK/t1")" "1 403 407 261 378" "--file equals TEXT"
    same "$(tok --model "$M" --file "$WORK/t2")" "1 403 407 261 378 13" "final newline is <0x0A>"
    : > "$WORK/empty"
    same "$(tok --model "$M" --file "$WORK/empty")" "1" "empty file: BOS only"
    same "$(tok --model "$M" --no-bos "")" "" "empty TEXT, --no-bos: empty line"
    ;;
  llama2)
    same "$(tok --tokenizer "$L2" "Hello world")" "1 15043 3186" "Llama 2 Hello world"
    same "$(tok --tokenizer "$L2" --no-bos --ids "Hello world")" "15043 3186" "Llama 2 --no-bos"
    # the 32,000-piece file counts its own records: the last id is in range
    out=$(tok --tokenizer "$L2" --no-bos --file "$WIKI")
    n=$(echo "$out" | wc -w); [ "$n" -gt 250000 ] || fail "only $n ids for wiki.test.raw"
    echo "$out" | tr ' ' '\n' | awk '$1 < 0 || $1 >= 32000 { bad = 1 } END { exit bad }' ||
      fail "id out of range"
    ;;
  pieces)
    same "$(tok --model "$M" --pieces "Once upon")" "<s> ▁Once ▁upon" "pieces, tokenizer.json"
    # llama2.c .bin pieces store ' ' (escaped \s), bytes are <0xNN> pieces
    same "$(tok --tokenizer "$M/tok512.bin" --no-bos --pieces "$(printf 'a\tb\\')")" \
      '\sa <0x09> b \\' "pieces, tok512.bin"
    same "$(tok --tokenizer "$L2" --pieces "Hi")" '\n<s>\n \sHi' "Llama 2 BOS piece has newlines"
    # every piece is one field: as many pieces as ids
    head -n 100 "$WIKI" > "$WORK/w"
    ni=$(tok --model "$M" --file "$WORK/w" | wc -w); np=$(tok --model "$M" --pieces --file "$WORK/w" | wc -w)
    [ "$ni" = "$np" ] || fail "$ni ids but $np pieces"
    [ "$(tok --model "$M" --pieces --file "$WORK/w" | wc -l)" = 1 ] || fail "pieces not on one line"
    ;;
  ranks)
    head -n 50 "$WIKI" > "$WORK/w"
    one=$(mpi 1 "$SP_BIN" tokenize --model "$M" --file "$WORK/w")
    two=$(mpi 2 "$SP_BIN" tokenize --model "$M" --file "$WORK/w")
    same "$two" "$one" "2 ranks"
    # rank 0 fails, every rank exits: one shardpress error line (mpiexec adds its own banner)
    rc=0; timeout 120 $SP_MPIEXEC -n 2 "$SP_BIN" tokenize --model "$M" --file "$WORK/nope" 2>"$WORK/err" || rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "expected a clean failure on 2 ranks, rc=$rc"
    [ "$(grep -c 'shardpress: error: .*nope: cannot open' "$WORK/err")" -eq 1 ] || { cat "$WORK/err"; fail "expected one error line"; }
    ;;
  bad)
    printf 'ok \xff bad' > "$WORK/bad.txt"; mkdir "$WORK/dir"
    expect_error 'nope\.txt.*cannot open' tok --model "$M" --file "$WORK/nope.txt"
    expect_error 'bad\.txt.*not valid UTF-8 at byte offset 3' tok --model "$M" --file "$WORK/bad.txt"
    expect_error 'TEXT is not valid UTF-8 at byte offset 1' tok --model "$M" "$(printf 'a\xc3')"
    expect_error 'directory' tok --model "$M" --file "$WORK/dir"
    expect_error 'not both' tok --model "$M" --tokenizer "$M/tok512.bin" hi
    expect_error 'tokenize: --model DIR or --tokenizer FILE is required' tok hi
    expect_error 'not both' tok --model "$M" --file "$WORK/bad.txt" hi
    expect_error 'tokenize: --file FILE or a TEXT argument is required' tok --model "$M"
    expect_error 'give --ids or --pieces, not both' tok --model "$M" --ids --pieces hi
    expect_error "unexpected argument 'b'" tok --model "$M" a b
    expect_error "unknown or incomplete option '--bos'" tok --model "$M" --bos hi
    expect_error "incomplete option '--file'" tok --model "$M" --file
    expect_error 'missing\.json.*cannot open' tok --tokenizer "$WORK/missing.json" hi
    printf '{"model": ' > "$WORK/broken.json"
    expect_error 'broken\.json.*invalid JSON' tok --tokenizer "$WORK/broken.json" hi
    expect_error 'no.*tokenizer|cannot open|not found|config' tok --model "$WORK/dir" hi
    ;;
  *) fail "unknown case $1" ;;
esac
echo "ok: tokenize $1"
