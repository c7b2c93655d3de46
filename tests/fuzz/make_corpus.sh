#!/usr/bin/env bash
# make_corpus.sh SHARDPRESS_BIN — (re)build the seed corpora in tests/fuzz/corpus/<target>/
# from the real files: the bundled model (models/stories260K), ../shared/data, and the
# run.json and block segments of a real quantize run of that model. The result is committed;
# run this again only when a format changes. Derived seeds are small cuts of the real files
# (libFuzzer mutates small inputs faster), each described below.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${1:?usage: make_corpus.sh SHARDPRESS_BIN}
C="$ROOT/tests/fuzz/corpus"; M="$ROOT/models/stories260K"
DATA="$ROOT/../shared/data"; [ -d "$DATA" ] || DATA=/work/shared/data
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
rm -rf "$C" && mkdir -p "$C"/{safetensors,st_index,config,tokenizer_json,tokenizer_bin,llama2c,bits_map,run_json,segment}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
CAL="$DATA/text/stories260K-samples/calib.txt"
"$BIN" quantize --model "$M" --calib "$CAL" --out "$TMP/o1" --group-size 32 --nsamples 4 --ctx 32 \
  --levels 2,4 --checkpoint-dir "$TMP/ck1" >/dev/null
"$BIN" quantize --model "$M" --calib "$CAL" --out "$TMP/o2" --group-size -1 --nsamples 4 --ctx 32 \
  --bits 3 --method rtn --sym --checkpoint-dir "$TMP/ck2" >/dev/null
cp "$TMP/ck1/run.json" "$C/run_json/gptq_levels.json"; cp "$TMP/ck2/run.json" "$C/run_json/rtn_sym.json"
cp "$TMP/ck2/blocks/block-00000.spb" "$C/segment/rtn3_rowgroup.spb"
# A GGUF-type level (issue 11): Q4_1 has offsets (mins) in the wire form; run.json gguf_types.
"$BIN" quantize --model "$M" --out "$TMP/o3" --format gguf:Q4_1 --method rtn --checkpoint-dir "$TMP/ck3" \
  >/dev/null 2>&1
cp "$TMP/ck3/run.json" "$C/run_json/gguf_types.json"
cp "$M/config.json" "$C/config/stories260K.json"
cp "$M/tokenizer.json" "$C/tokenizer_json/stories260K.json"
cp "$M/tok512.bin" "$C/tokenizer_bin/tok512.bin"
python3 - "$M" "$C" "$TMP" <<'PY'
import json, struct, sys, random, os
M, C, TMP = sys.argv[1:4]
def w(path, data):
    open(os.path.join(C, path), "wb").write(data if isinstance(data, bytes) else data.encode())

# safetensors: cuts of the real model.safetensors (its own header entries and data).
b = open(f"{M}/model.safetensors", "rb").read(); n = struct.unpack("<Q", b[:8])[0]
hdr = json.loads(b[8:8 + n]); data = b[8 + n:]
def st(names, meta=None, conv=None):
    h, out, off = {}, b"", 0
    if meta is not None: h["__metadata__"] = meta
    for nm in names:
        e = hdr[nm]; raw = data[e["data_offsets"][0]:e["data_offsets"][1]]; dt = "F32"
        if conv == "F16":
            import array
            f = array.array("f", raw); raw = b"".join(struct.pack("<e", x) for x in f); dt = "F16"
        elif conv == "BF16":
            raw = b"".join(raw[i + 2:i + 4] for i in range(0, len(raw), 4)); dt = "BF16"
        h[nm] = {"dtype": dt, "shape": e["shape"], "data_offsets": [off, off + len(raw)]}
        out += raw; off += len(raw)
    j = json.dumps(h).encode(); j += b" " * (-len(j) % 8)
    return struct.pack("<Q", len(j)) + j + out
small = ["model.norm.weight", "model.layers.0.input_layernorm.weight", "model.layers.0.self_attn.k_proj.weight"]
w("safetensors/norms_kproj.safetensors", st(small, {"format": "pt"}))
w("safetensors/norms_f16.safetensors", st(small[:2], None, "F16"))
w("safetensors/norms_bf16.safetensors", st(small[:2], {}, "BF16"))
w("safetensors/real_header_cut.safetensors", b[:8 + n + 256])   # the whole real header, data cut
# st_index: the real tensor names over the two shards the target makes (odd/even names).
names = sorted(k for k in hdr if k != "__metadata__")
wm = {nm: f"model-0000{1 + i % 2}-of-00002.safetensors" for i, nm in enumerate(names)}
w("st_index/two_shards.json", json.dumps({"metadata": {"total_size": 4 * len(names)}, "weight_map": wm}, indent=2))
w("st_index/one_shard.json", json.dumps({"weight_map": {k: "model-00001-of-00002.safetensors" for k in names[::2]}}))
# config.json: the real one and the other architectures it may say (same sizes).
cfg = json.load(open(f"{M}/config.json"))
l3 = dict(cfg, rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 256}, bos_token_id=1, eos_token_id=[2, 3])
w("config/llama3_rope.json", json.dumps(l3, indent=2))
w("config/qwen2.json", json.dumps(dict(cfg, architectures=["Qwen2ForCausalLM"], model_type="qwen2",
          tie_word_embeddings=True, use_sliding_window=False, sliding_window=4096), indent=2))
w("config/mistral.json", json.dumps(dict(cfg, architectures=["MistralForCausalLM"], model_type="mistral",
          sliding_window=None, head_dim=8), indent=2))
# tokenizer.json, byte-level: GPT-2's byte map, a few merges, Llama 3's split regex, Qwen2's NFC.
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256)); cs = bs[:]; k = 0
for x in range(256):
    if x not in bs: bs.append(x); cs.append(256 + k); k += 1
bmap = {x: chr(c) for x, c in zip(bs, cs)}
vocab = {bmap[i]: i for i in range(256)}
merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "o n", "e r", "Ġ s"]
for i, m in enumerate(merges): vocab[m.replace(" ", "")] = 256 + i
added = [{"id": 300, "content": "<|endoftext|>", "single_word": False, "lstrip": False, "rstrip": False,
          "normalized": False, "special": True}]
L3 = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
vocab["<|endoftext|>"] = 300
base = {"version": "1.0", "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": L3}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "unk_token": None, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": merges}}
w("tokenizer_json/bytelevel_llama3.json", json.dumps(base, ensure_ascii=False))
q2 = dict(base, normalizer={"type": "NFC"})
q2["model"] = dict(base["model"], ignore_merges=False, merges=[m.split(" ") for m in merges])
w("tokenizer_json/bytelevel_qwen2_nfc.json", json.dumps(q2, ensure_ascii=False))
# llama2.c checkpoints: the real header on a tiny model of the same layout (tied and untied),
# and the real file cut after its first 16 KiB.
rb = open(f"{M}/stories260K.bin", "rb").read()
w("llama2c/real_cut.bin", rb[:16384])
def l2c(dim, hid, L, H, KV, V, seq, tied, seed):
    r = random.Random(seed); hd = dim // H
    nf = V * dim + L * dim + L * dim * H * hd + 2 * L * dim * KV * hd + L * H * hd * dim + L * dim + \
         3 * L * dim * hid + dim + seq * hd  # + freq_cis (real and imag, seq * hd/2 each)
    if not tied: nf += V * dim
    body = struct.pack(f"<{nf}f", *[r.uniform(-0.5, 0.5) for _ in range(nf)])
    return struct.pack("<7i", dim, hid, L, H, KV, V if tied else -V, seq) + body
w("llama2c/tiny_tied.bin", l2c(8, 16, 2, 2, 1, 16, 8, True, 1))
w("llama2c/tiny_untied.bin", l2c(8, 12, 1, 2, 2, 12, 4, False, 2))
# bits maps as search writes them, with comments and blank lines.
mods = [f"model.layers.{l}.{m}" for l in range(5) for m in ("self_attn.q_proj", "self_attn.k_proj",
        "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]
w("bits_map/search_map.txt", "# shardpress search MAP\n" + "".join(f"{m} {2 + i % 7}\n" for i, m in enumerate(mods)))
w("bits_map/short.txt", "\n  model.layers.0.mlp.down_proj 8\n\t# comment\nmodel.layers.1.self_attn.q_proj\t3")
PY
# A segment with only its first unit (n_units = 1): the target writes the CRC.
python3 - "$TMP/ck1/blocks/block-00000.spb" "$C/segment/gptq_first_unit.spb" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
hdr = bytearray(b[:24]); struct.pack_into("<I", hdr, 16, 1)
u = b[24:24 + 32]; nbytes = struct.unpack_from("<Q", u, 24)[0]
open(sys.argv[2], "wb").write(bytes(hdr) + u + b[56:56 + nbytes] + b"\0\0\0\0")
PY
python3 - "$TMP/ck3/blocks/block-00000.spb" "$C/segment/q4_1_first_unit.spb" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
hdr = bytearray(b[:24]); struct.pack_into("<I", hdr, 16, 1)
u = b[24:24 + 32]; nbytes = struct.unpack_from("<Q", u, 24)[0]
open(sys.argv[2], "wb").write(bytes(hdr) + u + b[56:56 + nbytes] + b"\0\0\0\0")
PY
du -sh "$C"; ls "$C"/*
