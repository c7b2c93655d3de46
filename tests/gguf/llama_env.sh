# tests/gguf/llama_env.sh — source it with CACHE set (and skip/fail defined): fetches once, into
# $CACHE under a lock, node-llama-cpp's llama.cpp source bundle and prebuilt CPU libraries with
# npm, builds tests/gguf/llama_client.c against them, and sets LL (the cache), BINS (the
# libraries), SRC (the llama.cpp source), LIBS (the three libraries to link) and CLIENT.
# llama_env_tool NAME builds llama.cpp's tools/NAME (quantize, imatrix) into $LL once and
# prints its path. Used by tests/mpi/test_gguf.sh and bench/run_gguf.sh. SP_SOURCE_DIR: the repo.
VERSION=3.22.1
skip() { echo "SKIP: $*"; exit 77; }
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || skip "the prebuilt llama.cpp libraries are x86-64 Linux only"
for t in npm git cc tar; do command -v $t >/dev/null || skip "$t is not installed"; done
mkdir -p "$CACHE"
LL="$CACHE/llama-$VERSION"
exec 9>"$CACHE/.llama-$VERSION.lock"
flock 9
if [ ! -f "$LL/.complete" ]; then
  tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
  if ! (cd "$tmp" && timeout 600 npm pack --loglevel=error --cache "$CACHE/.npm" --fetch-timeout=30000 \
        --fetch-retries=1 "node-llama-cpp@$VERSION" "@node-llama-cpp/linux-x64@$VERSION" >pack.log 2>&1); then
    why=$(grep -m 2 "error" "$tmp/pack.log" | tr '\n' ' '); rm -rf "$tmp"
    skip "npm cannot fetch node-llama-cpp@$VERSION (offline?): $why"
  fi
  mkdir "$tmp/bins" "$tmp/src"
  tar xzf "$tmp/node-llama-cpp-linux-x64-$VERSION.tgz" -C "$tmp/bins"
  tar xzf "$tmp/node-llama-cpp-$VERSION.tgz" -C "$tmp/src" package/llama/gitRelease.bundle
  git clone -q "$tmp/src/package/llama/gitRelease.bundle" "$tmp/llama.cpp" 2>/dev/null
  rm -rf "$tmp/src" "$tmp"/*.tgz "$tmp/pack.log"
  rm -rf "$LL" && mv -T "$tmp" "$LL" && touch "$LL/.complete"
fi
BINS="$LL/bins/package/bins/linux-x64"; SRC="$LL/llama.cpp"
LIBS=("$BINS/libllama.v0.5.0.so" "$BINS/libggml.v0.5.0.so" "$BINS/libggml-base.so")
[ -f "${LIBS[0]}" ] && [ -f "$SRC/include/llama.h" ] || fail "the llama.cpp cache in $LL is incomplete"
# the client, rebuilt when its source changes
h=$(sha1sum "$SP_SOURCE_DIR/tests/gguf/llama_client.c" | cut -c1-12)
CLIENT="$LL/llama_client-$h"
if [ ! -x "$CLIENT" ]; then
  cc -O1 -std=c11 -Wall -I"$SRC/include" -I"$SRC/ggml/include" "$SP_SOURCE_DIR/tests/gguf/llama_client.c" \
     -o "$CLIENT.tmp" "${LIBS[@]}" -Wl,-rpath,"$BINS" -lm || fail "cannot build llama_client"
  mv "$CLIENT.tmp" "$CLIENT"
fi
flock -u 9
llama_env_tool() {
  local name=$1 out="$LL/llama-$1" srcs
  exec 9>"$CACHE/.llama-$VERSION.lock"; flock 9
  if [ ! -x "$out" ]; then
    srcs=("$SRC/tools/$name/$name.cpp")
    [ -f "$SRC/tools/$name/main.cpp" ] && srcs+=("$SRC/tools/$name/main.cpp")
    g++ -O1 -std=c++17 -I"$SRC/include" -I"$SRC/ggml/include" -I"$SRC/common" -I"$SRC/vendor" \
      "${srcs[@]}" -o "$out.tmp" "$BINS/libllama-common.so" "${LIBS[@]}" -Wl,-rpath,"$BINS" >&2 ||
      { flock -u 9; fail "cannot build llama-$name"; }
    mv "$out.tmp" "$out"
  fi
  flock -u 9
  echo "$out"
}
