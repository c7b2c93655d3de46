#!/usr/bin/env python3
# gguf_budget.py LLAMA.gguf OURS.gguf SEARCH.json LEVEL=BPW,... — an independent reader of two GGUF
# files (tensor infos and the ggml block sizes of the types in play) for the --match-gguf checks
# of tests/mpi/test_gguf.sh: search's target_bits is LLAMA's block-linear bytes per weight, our
# block linears and whole file are no bigger, every level's uniform average is its GGUF blocks'
# bits (LEVEL=BPW), and token_embd/output keep LLAMA's types.
import json, struct, sys
SIZE = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
        10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
        41: (128, 18), 42: (64, 18)}  # Q1_0, Q2_0 (ggml-common.h: fp16 d + 16 bytes)
FMT = {0: '<B', 1: '<b', 2: '<H', 3: '<h', 4: '<I', 5: '<i', 6: '<f', 7: '<?', 10: '<Q', 11: '<q',
       12: '<d'}  # GGUF metadata value types (8 string and 9 array are read below)
def read(path):
    """(metadata {key: scalar or string; arrays as None}, {tensor: (type, values, bytes)}, file size)"""
    b = open(path, 'rb').read(); p = 24
    nt, nkv = struct.unpack('<QQ', b[8:24])
    def s():
        nonlocal p
        n = struct.unpack('<Q', b[p:p + 8])[0]; p += 8 + n; return b[p - n:p].decode()
    def value(t):
        nonlocal p
        if t == 8: return s()
        if t == 9:
            et, n = struct.unpack('<IQ', b[p:p + 12]); p += 12
            for _ in range(n): value(et)
            return None
        v = struct.unpack_from(FMT[t], b, p)[0]; p += struct.calcsize(FMT[t]); return v
    kv = {}
    for _ in range(nkv):
        k = s(); t = struct.unpack('<I', b[p:p + 4])[0]; p += 4; kv[k] = value(t)
    out = {}
    for _ in range(nt):
        name = s(); nd = struct.unpack('<I', b[p:p + 4])[0]; p += 4
        ne = struct.unpack(f'<{nd}Q', b[p:p + 8 * nd]); p += 8 * nd
        ty = struct.unpack('<I', b[p:p + 4])[0]; p += 12
        n = 1
        for e in ne: n *= e
        bl, by = SIZE[ty]
        out[name] = (ty, n, n // bl * by)
    return kv, out, len(b)
def tensors(path):
    _, t, size = read(path)
    return t, size
lin = ('attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down')
def blocks(t): return [k for k in t if k.startswith('blk.') and k.split('.')[2] in lin]
def main():
    lq, lq_size = tensors(sys.argv[1]); us, us_size = tensors(sys.argv[2])
    j = json.load(open(sys.argv[3]))
    lb = sum(lq[k][2] for k in blocks(lq)); lw = sum(lq[k][1] for k in blocks(lq))
    ub = sum(us[k][2] for k in blocks(us))
    assert len(blocks(us)) == 14 == len(blocks(lq)), blocks(us)
    assert abs(j["target_bits"] - 8 * lb / lw) < 1e-9, (j["target_bits"], 8 * lb / lw)
    assert j["avg_bits"] <= j["target_bits"] + 1e-9 and abs(j["avg_bits"] - 8 * ub / lw) < 1e-9, (j["avg_bits"], 8 * ub / lw)
    assert ub <= lb, (ub, lb)
    # every level priced at its GGUF blocks (Q8_0 a plain level: 34 bytes per 32, not GPTQ's 8.75)
    u = j["uniform_avg_bits"]
    for lvl, bpw in (x.split("=") for x in sys.argv[4].split(",")):
        assert abs(u[lvl] - float(bpw)) < 1e-9, (lvl, u[lvl], bpw)
    for k in ('token_embd.weight', 'output.weight'):
        assert us[k][0] == lq[k][0], (k, us[k][0], lq[k][0])
    assert us_size <= lq_size, (us_size, lq_size)
    mix = sorted(set(us[k][0] for k in blocks(us)))
    print(f"ok: --match-gguf budget {j['target_bits']:.4f} bits/weight ({lb} bytes of block linears, as "
          f"counted here); ours {ub} bytes, types {mix}; files {us_size} <= {lq_size} bytes; "
          f"token_embd/output types {lq['token_embd.weight'][0]}/{lq['output.weight'][0]} kept")
if __name__ == '__main__':
    main()
