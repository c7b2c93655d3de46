#!/usr/bin/env python3
"""Make site models for the exchange tests from a base model directory (stdlib only).

usage: make_sites.py BASE OUT_DIR N [--scale S] [--seed K] [--f16] [--reshape NAME]
Writes OUT_DIR/0 .. OUT_DIR/N-1, each a copy of BASE (config, tokenizer) whose
model.safetensors holds base + S * noise_i (noise_i seeded by K and i, uniform in [-1, 1],
with a site-specific common direction so the deltas are correlated as in federated training).
--f16 stores the tensors as F16; --reshape NAME swaps the two dims of tensor NAME (bad input).
"""
import array, json, os, random, shutil, struct, sys

def read_st(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    meta = h.pop('__metadata__', None)
    out = {}
    for k, v in h.items():
        b, e = v['data_offsets']
        assert v['dtype'] == 'F32'
        a = array.array('f'); a.frombytes(data[b:e])
        out[k] = (v['shape'], a)
    return meta, out

def write_st(path, tensors, f16=False):
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        shape, a = tensors[k]
        raw = struct.pack('<%de' % len(a), *a) if f16 else a.tobytes()
        header[k] = {'dtype': 'F16' if f16 else 'F32', 'shape': shape, 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw); off += len(raw)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h))); f.write(h)
        for b in blobs: f.write(b)

def main():
    args = sys.argv[1:]
    base, out, n = args[0], args[1], int(args[2])
    opt = dict(scale=0.01, seed=1, f16=False, reshape=None)
    i = 3
    while i < len(args):
        a = args[i]
        if a == '--f16': opt['f16'] = True; i += 1; continue
        opt[a[2:]] = args[i + 1]; i += 2
    scale, seed = float(opt['scale']), int(opt['seed'])
    _, ts = read_st(os.path.join(base, 'model.safetensors'))
    for s in range(n):
        d = os.path.join(out, str(s)); os.makedirs(d, exist_ok=True)
        for fn in os.listdir(base):
            if fn.endswith('.json') or fn.endswith('.bin') and fn.startswith('tok'):
                shutil.copy(os.path.join(base, fn), d)
        rng = random.Random(seed * 1000 + s)
        common = random.Random(seed)
        new = {}
        for k in sorted(ts):
            shape, a = ts[k]
            b = array.array('f', (x + scale * (0.5 * common.uniform(-1, 1) + rng.uniform(-1, 1)) for x in a))
            if opt['reshape'] == k and len(shape) == 2: shape = [shape[1], shape[0]]
            new[k] = (shape, b)
        write_st(os.path.join(d, 'model.safetensors'), new, opt['f16'])

main()
