#!/usr/bin/env python3
"""Independent reference for `shardpress exchange` (stdlib only: no numpy on Debian 12 here).

It reads safetensors (F32) and the files transport's site messages itself and recomputes what a
round must give, so the tests compare the program against arithmetic done here, not against
another run of the program.

usage:
  exchange_ref.py dense OUT BASE LR W SITE...
      OUT must be BASE + LR * sum_i W_i (SITE_i - BASE) within fp32 rounding; W is 'mean' or
      comma-separated weights (normalised here). Used with --compressor none.
  exchange_ref.py topk FILES FRAC LR W BASE OUT1[,OUT2,..] SITE...   (LR: a number or auto)
      for round r = 1, 2, ..: each site's uplink message of each unit (files transport,
      FILES/round-(r-1)/up-SSSSS.msg) must carry exactly the K = ceil(FRAC d) largest |residual|
      coordinates with the residual's values, residual = (SITE_i - base_r) - g_i where g_i is
      the sum of the site's earlier messages (decoded here); and OUT_r = base_r + LR sum_i w_i c_i
      (base_1 = BASE, base_r = OUT_{r-1}); the norms message after each unit holds ||residual||^2
      and ||residual - C(residual)||^2, and LR auto is EF21's step for alpha = 1 - their ratio.
  exchange_ref.py norms SITE... BASE       print ||SITE_i - BASE|| / sum_j ||SITE_j - BASE||
  exchange_ref.py relerr OUT BASE0 SITE... print ||(OUT - BASE0) - mean_i (SITE_i - BASE0)|| /
                                           ||mean_i (SITE_i - BASE0)||
"""
import array, json, math, os, struct, sys


def read_st(d):
    p = d if d.endswith('.safetensors') else os.path.join(d, 'model.safetensors')
    with open(p, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    h.pop('__metadata__', None)
    out = {}
    for k in sorted(h):  # the exchange's unit order: tensors in name order
        v = h[k]
        assert v['dtype'] == 'F32', (p, k, v['dtype'])
        b, e = v['data_offsets']
        a = array.array('f')
        a.frombytes(data[b:e])
        out[k] = a
    return out


def f32(xs):
    """Round a sequence of Python floats (doubles) to fp32, as the C code's float stores do."""
    return array.array('f', xs)


def fail(msg):
    print('FAIL: ' + msg, file=sys.stderr)
    sys.exit(1)


def weights(spec, n):
    if spec == 'mean':
        return [1.0 / n] * n
    w = [float(x) for x in spec.split(',')]
    assert len(w) == n
    s = sum(w)
    return [x / s for x in w]


def check_close(name, got, want, scale):
    # fp32: one rounding of the delta per site and of the sum, then of base + delta:
    # a few ulp of the magnitudes involved.
    worst = 0.0
    for j, (g, w, s) in enumerate(zip(got, want, scale)):
        tol = 4e-7 * s + 1e-12
        if abs(g - w) > tol:
            fail('%s[%d]: %.9g, expected %.9g (|diff| %.3g > %.3g)' % (name, j, g, w, abs(g - w), tol))
        worst = max(worst, abs(g - w))
    return worst


def cmd_dense(a):
    out, base, lr, wspec, sites = a[0], a[1], float(a[2]), a[3], a[4:]
    O, B = read_st(out), read_st(base)
    S = [read_st(s) for s in sites]
    w = weights(wspec, len(S))
    worst, moved = 0.0, 0.0
    for k in B:
        b = B[k]
        want, scale = [], []
        for j in range(len(b)):
            d = sum(w[i] * (S[i][k][j] - b[j]) for i in range(len(S)))
            want.append(b[j] + lr * d)
            scale.append(abs(b[j]) + lr * sum(abs(S[i][k][j] - b[j]) for i in range(len(S))) * 2)
            moved = max(moved, abs(lr * d))
        worst = max(worst, check_close(k, O[k], want, scale))
    if moved == 0.0:
        fail('the sites do not differ from the base: the test would prove nothing')
    print('ok: dense: max |out - (base + lr sum w v)| = %.3g (largest step %.3g)' % (worst, moved))


def parse_msgs(path):
    """A files-transport site file: 32-byte header, messages, 16-byte trailer. Per unit two
    messages: the Top-K residual (f32 values), then the residual norms (dense, 2 f32 values).
    Returns [(d, idx, vals, (r2, e2)), ...]."""
    raw = open(path, 'rb').read()
    assert raw[:4] == b'SPXF' and raw[-4:] == b'FXPS', path
    count = struct.unpack('<Q', raw[-16:-8])[0]
    pos, end, msgs = 32, len(raw) - 16, []
    while pos < end:
        assert raw[pos:pos + 4] == b'SPC1', (path, pos)
        kind, values, flags = raw[pos + 4], raw[pos + 5], raw[pos + 6]
        d, k, rawlen, stored = struct.unpack('<QQQQ', raw[pos + 8:pos + 40])
        if len(msgs) % 2:  # the norms message
            assert kind == 0 and values == 0 and flags == 0 and d == 2, 'expected 2 dense f32 norms'
            msgs.append(struct.unpack('<ff', raw[pos + 48:pos + 56]))
            pos += 48 + stored
            continue
        assert kind == 1 and values == 0 and flags == 0, 'expected topk with f32 values, no zstd'
        p = pos + 48
        idx, last = [], -1
        for _ in range(k):  # LEB128 gaps
            v, sh = 0, 0
            while True:
                byte = raw[p]; p += 1
                v |= (byte & 0x7f) << sh; sh += 7
                if not byte & 0x80:
                    break
            last = last + 1 + v
            idx.append(last)
        vals = array.array('f')
        vals.frombytes(raw[p:p + 4 * k])
        msgs.append((d, idx, vals))
        pos += 48 + stored
    assert len(msgs) == count and count % 2 == 0, path
    return [msgs[i] + (msgs[i + 1],) for i in range(0, count, 2)]


def cmd_topk(a):
    files, frac, lr, wspec, base0, outs, sites = a[0], float(a[1]), a[2], a[3], a[4], a[5].split(','), a[6:]
    S = [read_st(s) for s in sites]
    n = len(S)
    w = f32(weights(wspec, n))  # the server adds (float)w_i * c_i
    # the sites' residual is v_i - g_i both for the mean (EF21, 1/(n * 1/n) = 1) and for data
    # weights (the target sum w_i v_i: g_i tracks v_i); the server weighs the messages by w_i.
    base = read_st(base0)
    names = list(base)
    g = [{k: array.array('f', bytes(4 * len(base[k]))) for k in names} for _ in range(n)]
    for r, out in enumerate(outs):
        O = read_st(out)
        M = [parse_msgs(os.path.join(files, 'round-%06d' % r, 'up-%05d.msg' % i)) for i in range(n)]
        for i in range(n):
            assert len(M[i]) == len(names), 'one message per tensor expected (units of one tensor)'
        for t, k in enumerate(names):
            b, L = base[k], len(base[k])
            K = math.ceil(frac * L)
            R = E = 0.0
            for i in range(n):
                d, idx, vals, (r2, e2) = M[i][t]
                if d != L or len(idx) != K:
                    fail('round %d site %d %s: message d=%d k=%d, expected d=%d k=%d' % (r + 1, i, k, d, len(idx), L, K))
                v = f32([S[i][k][j] - b[j] for j in range(L)])
                res = f32([v[j] - g[i][k][j] for j in range(L)])
                sent = set(idx)
                lo = min(abs(res[j]) for j in idx)
                hi = max((abs(res[j]) for j in range(L) if j not in sent), default=0.0)
                if lo < hi:
                    fail('round %d site %d %s: sent a coordinate with |residual| %.9g while %.9g was '
                         'left out: not the K largest' % (r + 1, i, k, lo, hi))
                for j, x in zip(idx, vals):
                    if x != res[j]:
                        fail('round %d site %d %s[%d]: sent %.9g, residual %.9g' % (r + 1, i, k, j, x, res[j]))
                    g[i][k][j] += x
                # the norms the site reported: of its residual, and of what was not sent
                want_r2 = sum(x * x for x in res)
                want_e2 = want_r2 - sum(res[j] * res[j] for j in idx)
                for nm, got, want in (('|r|^2', r2, want_r2), ('|r - C(r)|^2', e2, want_e2)):
                    if abs(got - want) > 1e-5 * want_r2 + 1e-30:
                        fail('round %d site %d %s: reported %s %.9g, expected %.9g' % (r + 1, i, k, nm, got, want))
                R += want_r2
                E += want_e2
            # the step: fixed, or auto = EF21's step for the measured contraction,
            # 1/(L + L~ sqrt(beta/theta)) with L = L~ = 1, theta = 1 - sqrt(1 - alpha),
            # beta = (1 - alpha)/theta, alpha = 1 - E/R (written out, not simplified)
            if lr == 'auto':
                alpha = 1.0 - E / R if R > 0 else 1.0
                if alpha >= 1.0:
                    step = 1.0
                else:
                    theta = 1.0 - math.sqrt(1.0 - alpha)
                    beta = (1.0 - alpha) / theta
                    step = 1.0 / (1.0 + 1.0 * math.sqrt(beta / theta))
            else:
                step = float(lr)
            # the server's g is the weighted sum of every message so far
            want = [b[j] + step * sum(w[i] * g[i][k][j] for i in range(n)) for j in range(L)]
            sc = [abs(b[j]) + step * sum(abs(w[i] * g[i][k][j]) for i in range(n)) * 4 for j in range(L)]
            check_close('round %d %s' % (r + 1, k), O[k], want, sc)
        print('ok: topk round %d: every site sent the K largest residual coordinates, out = base + lr sum w c' % (r + 1))
        base = O


def cmd_norms(a):
    sites, B = [read_st(s) for s in a[:-1]], read_st(a[-1])
    nr = [math.sqrt(sum((s[k][j] - B[k][j]) ** 2 for k in B for j in range(len(B[k])))) for s in sites]
    print(json.dumps([x / sum(nr) for x in nr]))


def cmd_relerr(a):
    O, B = read_st(a[0]), read_st(a[1])
    S = [read_st(s) for s in a[2:]]
    num = den = 0.0
    for k in B:
        for j in range(len(B[k])):
            m = sum(s[k][j] for s in S) / len(S) - B[k][j]
            num += (O[k][j] - B[k][j] - m) ** 2
            den += m * m
    print('%.6f' % math.sqrt(num / den))


{'dense': cmd_dense, 'topk': cmd_topk, 'norms': cmd_norms, 'relerr': cmd_relerr}[sys.argv[1]](sys.argv[2:])
