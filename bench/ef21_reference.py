#!/usr/bin/env python3
"""ef21_reference.py FILE FACTOR ROUNDS CSV — a second, plain implementation of EF21 (Top-1,
n = 20 workers, λ = 0.1) with the issue-12 conventions, in pure Python and float64 throughout
(no MPI, no shardpress code), to check bench_ef21's figures: it prints the rounds to
‖∇f‖² < 1e-3 / 1e-5 / 1e-7 of both and the largest relative difference of ‖∇f‖² over the
rounds both have. Written independently of bench_ef21.c (λ_max by power iteration instead of
LAPACK, dense per-worker loops instead of the library's messages)."""
import math, sys

def main():
    path, factor, R, csvp = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    n, lam, K = 20, 0.1, 1
    rows, labels, d = [], [], 0
    for line in open(path):
        p = line.split()
        if not p:
            continue
        labels.append(float(p[0]))
        r = []
        for t in p[1:]:
            j, v = t.split(':')
            r.append((int(j) - 1, float(v)))
            d = max(d, int(j))
        rows.append(r)
    top = max(labels)
    b = [1.0 if y == top else -1.0 for y in labels]
    m = len(rows) // n

    def lmax(r0, r1, scale):
        M = [[0.0] * d for _ in range(d)]
        for r in range(r0, r1):
            for j, v in rows[r]:
                Mj = M[j]
                for k, u in rows[r]:
                    Mj[k] += v * u * scale
        x = [1.0] * d
        lam_ = 0.0
        for _ in range(3000):
            y = [sum(Mi[k] * x[k] for k in range(d)) for Mi in M]
            nrm = math.sqrt(sum(t * t for t in y))
            x = [t / nrm for t in y]
            if abs(nrm - lam_) <= 1e-13 * nrm:
                break
            lam_ = nrm
        return nrm

    Ls = [lmax(i * m, (i + 1) * m, 1.0 / (4 * m)) + 2 * lam for i in range(n)]
    L = lmax(0, n * m, 1.0 / (4 * n * m)) + 2 * lam
    alpha = K / d
    theta = 1 - math.sqrt(1 - alpha)
    beta = (1 - alpha) / theta
    Lt = math.sqrt(sum(l * l for l in Ls) / n)
    gamma = factor / (L + Lt * math.sqrt(beta / theta))

    def grad(i, x):
        g = [lam * 2 * t / (1 + t * t) ** 2 for t in x]
        for r in range(i * m, (i + 1) * m):
            z = sum(v * x[j] for j, v in rows[r])
            s = -b[r] / (1 + math.exp(b[r] * z)) / m
            for j, v in rows[r]:
                g[j] += s * v
        return g

    x = [0.0] * d
    gi = [grad(i, x) for i in range(n)]
    g = [sum(gi[i][k] for i in range(n)) / n for k in range(d)]
    ref = []
    for t in range(R + 1):
        grads = gi if t == 0 else [grad(i, x) for i in range(n)]
        full = [sum(gr[k] for gr in grads) / n for k in range(d)]
        ref.append(sum(v * v for v in full))
        if t > 0:
            for i in range(n):
                diff = [grads[i][k] - gi[i][k] for k in range(d)]
                j = max(range(d), key=lambda k: (abs(diff[k]), -k))  # ties: lower index
                gi[i][j] += diff[j]
                g[j] += diff[j] / n
        x = [x[k] - gamma * g[k] for k in range(d)]
    ours = [float(l.split(',')[1]) for l in open(csvp).read().split('\n')[1:] if l]
    def hit(v, eps):
        return next((t for t, y in enumerate(v) if y < eps), None)
    N = min(len(ours), len(ref))
    rel = max(abs(ours[t] - ref[t]) / ref[t] for t in range(N))
    print('gamma %.9g L %.9g Ltilde %.9g' % (gamma, L, Lt))
    for eps in (1e-3, 1e-5, 1e-7):
        print('rounds to %g: bench_ef21 %s, reference %s' % (eps, hit(ours, eps), hit(ref, eps)))
    print('max relative difference of grad_norm_sq over %d rounds: %.3g' % (N, rel))

main()
