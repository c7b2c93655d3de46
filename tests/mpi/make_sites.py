#!/usr/bin/env python3
"""Make site models for the exchange tests from a base model directory (stdlib only).

usage: make_sites.py BASE OUT_DIR N [--scale S] [--seed K] [--f16] [--reshape NAME]
                    [--kind uniform|gauss|lowrank]
Writes OUT_DIR/0 .. OUT_DIR/N-1, each a copy of BASE (config, tokenizer) whose
model.safetensors holds base + S * delta_i, delta_i seeded by K and i:
  uniform (default): noise uniform in [-1, 1] plus half of a direction common to the sites (so
           the deltas are correlated as in federated training);
  gauss:   independent standard normal noise (issue 21's experiment);
  lowrank: not white noise: per 2-D tensor [R, C], sum_k a_ik u_k v_k^T over 4 directions
           shared by the sites (site-specific coefficients a_ik), plus 0.5% of the entries of
           each site spiked by N(0, 5^2), plus N(0, 0.1^2) noise; scaled to unit rms before S.
           1-D tensors get gauss.
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

def lowrank(shape, common, rng, rank=4):
    R, C = shape
    U = [[common.gauss(0, 1) for _ in range(R)] for _ in range(rank)]
    V = [[common.gauss(0, 1) for _ in range(C)] for _ in range(rank)]
    c = [rng.gauss(0, 1) for _ in range(rank)]
    d = [sum(c[k] * U[k][r] * V[k][q] for k in range(rank)) + 0.1 * rng.gauss(0, 1)
         for r in range(R) for q in range(C)]
    for _ in range(max(1, len(d) // 200)):
        d[rng.randrange(len(d))] += rng.gauss(0, 5)
    rms = (sum(x * x for x in d) / len(d)) ** 0.5
    return [x / rms for x in d]

def main():
    args = sys.argv[1:]
    base, out, n = args[0], args[1], int(args[2])
    opt = dict(scale=0.01, seed=1, f16=False, reshape=None, kind='uniform')
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
            if opt['kind'] == 'gauss' or (opt['kind'] == 'lowrank' and len(shape) != 2):
                b = array.array('f', (x + scale * rng.gauss(0, 1) for x in a))
            elif opt['kind'] == 'lowrank':
                b = array.array('f', (x + scale * y for x, y in zip(a, lowrank(shape, common, rng))))
            else:
                b = array.array('f', (x + scale * (0.5 * common.uniform(-1, 1) + rng.uniform(-1, 1)) for x in a))
            if opt['reshape'] == k and len(shape) == 2: shape = [shape[1], shape[0]]
            new[k] = (shape, b)
        write_st(os.path.join(d, 'model.safetensors'), new, opt['f16'])

main()
