/* sp_gptq_body.h — private to sp_gptq.c, which includes it twice: once with SP_T = float
 * (SP_GPTQ_F32) and once with SP_T = double (SP_GPTQ_F64). Not a public header.
 *
 * Expects: SP_T, SP_FN(name) (name with a type suffix), SP_GEMM, SP_GER, SP_POTRF, SP_TRTRI,
 * SP_QPARAMS, SP_QSEARCH, SP_GSEARCH, SP_QCOLUMN, and from sp_gptq.c struct sp_gptq_ctx and the SP_GPTQ_* constants. Shape legend as in sp_gptq.h; C = ctx->cols, R = rows.
 *
 * Layouts inside the loop (all "transposed": one column of W is contiguous):
 *   X   [C, R]  row j = W[:, perm[j]] (dead columns 0); after column j is quantized, row j
 *               holds Δ_j = W_j − Q_j instead
 *   Ap  [P, R]  row t = A_{p1+t} = Σ_{m<p1+t} Δ_m R_m,p1+t for the current panel [p1, p2),
 *               as far as it has been applied (see run)
 *   Ct  [C, R]  codes of permuted column j
 *   Ps, Pz [G, R]  group parameters, row g = group g (Pm [G, R] the offsets of a gtype level)
 *   Pd  [NS, R, 2] a K-quant level's super-block scales (d, dmin)
 * Group parameters are fixed one span at a time: a span is a group, or for a gtype level
 * (sp_gtype.h) one block of its type (256 columns for the K-quants: several groups at once).
 *   R   [C, C]  column-major, R(i, j) = R[i + j·C] for i <= j, 0 below: H + λI = R Rᵀ
 */

/* Factorize J·P·(H_fix + λI)·Pᵀ·J = L Lᵀ (lower, column-major) and reverse the buffer in
 * place, which turns it into R = J L J (upper), column-major. Retries with damp × 10. */
static sp_status SP_FN(factor)(sp_gptq_ctx *c, const double *H, const double *dfix, double mean,
                               sp_err *err) {
    const size_t n = (size_t)c->cols;
    /* Not calloc: every element is written below (zeros above the diagonal), so each page
     * faults once, on its first write, instead of being mapped to the zero page first. */
    SP_T *a = sp_malloc(n * n * sizeof(SP_T), err, "GPTQ Cholesky factor");
    if (!a) return SP_ENOMEM;
    double damp = c->o.damp;
    int ok = 0;
    for (int t = 0; t <= SP_GPTQ_RETRIES && !ok; t++, damp *= 10.0) {
        const double lam = damp * mean;
        /* A(u, v) = H_fix[p_u][p_v], p_u = perm[n−1−u]; only u >= v is read by potrf. Column v
         * of A reads row p_v of H (contiguous; H is symmetric). */
        for (size_t v = 0; v < n; v++) {
            const size_t pv = (size_t)c->perm[n - 1 - v];
            const double *hrow = H + pv * n;
            SP_T *col = a + v * n;
            if (t == 0) memset(col, 0, v * sizeof(SP_T)); /* never read by potrf or later */
            for (size_t u = v + 1; u < n; u++) col[u] = (SP_T)hrow[c->perm[n - 1 - u]];
            col[v] = (SP_T)(dfix[pv] + lam);
        }
        lapack_int info = SP_POTRF(LAPACK_COL_MAJOR, 'L', (lapack_int)n, a, (lapack_int)n);
        if (info < 0) {
            free(a);
            return sp_err_set(err, SP_EINTERNAL, "sp_gptq_prepare: potrf argument %d is bad",
                              (int)-info);
        }
        if (info > 0) continue;
        ok = 1;
        for (size_t i = 0; i < n && ok; i++) ok = isfinite(a[i + i * n]) && a[i + i * n] > 0;
        if (ok) {
            c->retries = t;
            c->damp = damp;
            c->lambda = lam;
        }
    }
    if (!ok) {
        free(a);
        return sp_err_set(err, SP_ENUMERIC,
                          "sp_gptq_prepare: H + λI (%zu x %zu) is not positive definite even "
                          "with damp %g (λ = %g)",
                          n, n, damp / 10.0, damp / 10.0 * mean);
    }
    /* Reversing the column-major buffer maps element (u, v) to (n−1−u, n−1−v): R = J L J. */
    for (size_t i = 0, k = n * n - 1; i < k; i++, k--) {
        SP_T t = a[i];
        a[i] = a[k];
        a[k] = t;
    }
    c->R = a;
    return SP_OK;
}

/* X[j, r] = W[r, perm[j]] (dead columns 0). 64 x 64 tiles walked in 8 x 8 blocks: a longer run
 * down one column of W would hit one cache set only (row strides are powers of two). */
static void SP_FN(load_w)(SP_T *X, const float *W, const sp_gptq_ctx *c, size_t R, size_t C) {
    const int32_t *perm = c->perm;
    for (size_t r0 = 0; r0 < R; r0 += 64)
        for (size_t j0 = 0; j0 < C; j0 += 64) {
            const size_t r1 = r0 + 64 < R ? r0 + 64 : R, j1 = j0 + 64 < C ? j0 + 64 : C;
            for (size_t jj = j0; jj < j1; jj += 8)
                for (size_t rr = r0; rr < r1; rr += 8) {
                    const size_t je = jj + 8 < j1 ? jj + 8 : j1, re = rr + 8 < r1 ? rr + 8 : r1;
                    for (size_t r = rr; r < re; r++) {
                        const float *w = W + r * C;
                        for (size_t j = jj; j < je; j++) X[j * R + r] = (SP_T)w[perm[j]];
                    }
                }
        }
    for (size_t j = 0; j < C; j++)
        if (c->dead[perm[j]]) memset(X + j * R, 0, R * sizeof(SP_T));
}

/* codes[r, perm[j]] = Ct[j, r], the same walk. */
static void SP_FN(store_codes)(uint8_t *codes, const uint8_t *Ct, const int32_t *perm, size_t R,
                               size_t C) {
    for (size_t r0 = 0; r0 < R; r0 += 64)
        for (size_t j0 = 0; j0 < C; j0 += 64) {
            const size_t r1 = r0 + 64 < R ? r0 + 64 : R, j1 = j0 + 64 < C ? j0 + 64 : C;
            for (size_t jj = j0; jj < j1; jj += 8)
                for (size_t rr = r0; rr < r1; rr += 8) {
                    const size_t je = jj + 8 < j1 ? jj + 8 : j1, re = rr + 8 < r1 ? rr + 8 : r1;
                    for (size_t r = rr; r < re; r++) {
                        uint8_t *o = codes + r * C;
                        for (size_t j = jj; j < je; j++) o[perm[j]] = Ct[j * R + r];
                    }
                }
        }
}

/* Buffers of one call, sized for a chunk of at most SP_GPTQ_ROWS rows (see run). */
typedef struct {
    SP_T *X;       /* [C, Rc]                                                                */
    SP_T *Ap;      /* [P, Rc]                                                                */
    SP_T *V;       /* [min(ps, C), Rc]                                                       */
    SP_T *S;       /* [B, Rc] (lazy groups)                                                  */
    SP_T *Uin;     /* [smax, smax] (lazy groups)                                             */
    SP_T *Ae;      /* [min(ps, C), Rc] (lazy groups running past a panel)                    */
    uint8_t *Ct;   /* [C, Rc]                                                                */
    float *Ps;     /* [G, Rc]                                                                */
    uint8_t *Pz;   /* [G, Rc]                                                                */
    float *Pm;     /* [G, Rc] offsets (gtype levels with a min), else NULL                   */
    float *Pd;     /* [NS, Rc, 2] super-block scales (K-quant levels), else NULL             */
} SP_FN(work);

/* Parameters of the span whose first original column is c0 (n columns), its weights V [n, R]
 * (column k contiguous): min-max or quant.py's --mse (SP_QPARAMS), or the importance-weighted
 * search with h_k = diag(H)[c0 + k] (SP_QSEARCH, norm 2). */
static void SP_FN(group_params)(const sp_gptq_ctx *c, const SP_FN(work) *wk, const SP_T *V,
                                size_t c0, int rows, int n, int bits) {
    const size_t Rn = (size_t)rows, g0 = c0 / (size_t)c->gs;
    float *Ps = wk->Ps + g0 * Rn;
    uint8_t *Pz = wk->Pz + g0 * Rn;
    if (c->gtype) { /* one block of the type per row; n is the block (cols are a multiple) */
        const int ng = n / c->gs;
        float x[256];
        for (size_t r = 0; r < Rn; r++) {
            for (int k = 0; k < n; k++) x[k] = (float)V[(size_t)k * Rn + r];
            sp_gtype_params p;
            sp_gtype_block_params(c->gtype, x, (c->gwt ? c->gwt : c->hdiag) + c0, &p);
            for (int j = 0; j < ng; j++) {
                Ps[(size_t)j * Rn + r] = p.scale[j];
                Pz[(size_t)j * Rn + r] = p.zero[j];
                if (wk->Pm) wk->Pm[(g0 + (size_t)j) * Rn + r] = p.min[j];
            }
            if (wk->Pd) {
                float *d = wk->Pd + ((c0 / 256) * Rn + r) * 2;
                d[0] = p.d, d[1] = p.dmin;
            }
        }
        return;
    }
    if (c->o.mse == SP_QSEARCH_HMSE)
        SP_QSEARCH(Ps, Pz, 1, V, 1, Rn, rows, n, bits, c->o.sym, c->hdiag + c0, 2.0);
    else if (c->o.mse == SP_QSEARCH_GGUF) /* ggml's rule, R_jj²-weighted shrink (issue 11) */
        SP_GSEARCH(Ps, Pz, 1, V, 1, Rn, rows, n, bits, (c->gwt ? c->gwt : c->hdiag) + c0);
    else
        SP_QPARAMS(Ps, Pz, 1, V, 1, Rn, rows, n, bits, c->o.sym, c->o.mse);
}

/* Where the column loop stands: block [i1, i2) inside panel [p1, p2) (see run). */
typedef struct {
    int i1, i2, p1, p2;
    const SP_T *Ap;  /* [p2 − p1, R] panel accumulators                                      */
    const SP_T *S;   /* [i2 − i1, R] snapshot of the block's rows of Ap at the block start    */
    SP_T *V;         /* [gs, R] the group's weights                                            */
    SP_T *Uin;       /* [s, s] U = R⁻¹ on [i1, e), column-major                                */
    SP_T *Ae;        /* [gs, R] A0 of columns past the panel                                   */
} SP_FN(loop_at);

/* Lazy group parameters (no act_order) for the group starting at column j of the block
 * [i1, i2): from the reference's W at the start of the block, i.e. for c in [j, e)
 *   V_c = W_c + Σ_{i1<=m<=c} A0_m U_mc,   U = R⁻¹ on [i1, e), A0_m = Σ_{k<i1} Δ_k R_km
 * (sp_gptq.h derives it). A0_m is: for m < i2, the block's rows of Ap while j == i1, else
 * their snapshot S; for i2 <= m < p2, Ap (untouched until the block ends); for m >= p2
 * (a group running past the panel), computed here into Ae. */
static sp_status SP_FN(lazy_params)(const sp_gptq_ctx *c, const SP_FN(loop_at) *L,
                                    const SP_FN(work) *wk, const SP_T *X, int j, int rows,
                                    int bits, sp_err *err) {
    const int C = c->cols, gs = c->ps, i1 = L->i1, i2 = L->i2, p1 = L->p1, p2 = L->p2;
    const size_t Rn = (size_t)rows, Cn = (size_t)C;
    const int e = j + gs < C ? j + gs : C, n = e - j;
    const SP_T *R = c->R;
    SP_T *V = L->V, *Uin = L->Uin;
    memcpy(V, X + (size_t)j * Rn, (size_t)n * Rn * sizeof(SP_T));
    if (i1 > 0) {
        const int s = e - i1;
        const size_t sn = (size_t)s;
        for (size_t v = 0; v < sn; v++)
            for (size_t u = 0; u < sn; u++)
                Uin[u + v * sn] = u <= v ? R[(size_t)i1 + u + ((size_t)i1 + v) * Cn] : 0;
        lapack_int info = SP_TRTRI(LAPACK_COL_MAJOR, 'U', 'N', (lapack_int)s, Uin, (lapack_int)s);
        if (info != 0)
            return sp_err_set(err, SP_EINTERNAL,
                              "sp_gptq_quantize: trtri of the R block at column %d failed (%d)",
                              i1, (int)info);
        if (e > p2) /* A0[p2:e] = R[0:i1, p2:e]ᵀ Δ[0:i1] */
            SP_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, e - p2, rows, i1, 1,
                    R + (size_t)p2 * Cn, C, X, rows, 0, L->Ae, rows);
        const int m0[3] = {i1, i2, p2}, m1[3] = {i2 < e ? i2 : e, p2 < e ? p2 : e, e};
        const SP_T *src[3] = {j == i1 ? L->Ap + (size_t)(i1 - p1) * Rn : L->S,
                              L->Ap + (size_t)(i2 - p1) * Rn, L->Ae};
        /* V[t, :] += Σ_k U(m0 + k, j + t) · A0[m0 + k, :]: row-major operand with ld = s. */
        for (int part = 0; part < 3; part++)
            if (m1[part] > m0[part])
                SP_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, rows, m1[part] - m0[part],
                        1, Uin + (size_t)(m0[part] - i1) + (size_t)(j - i1) * sn, s, src[part],
                        rows, 1, V, rows);
    }
    SP_FN(group_params)(c, wk, V, (size_t)j, rows, n, bits); /* no act_order: perm = id */
    return SP_OK;
}

/* Quantize column j (contiguous x = X[j], a = its accumulated update, inv = 1/R_jj) in chunks
 * of SP_GPTQ_CHUNK rows that stay in L1: w̃ = x + a·inv, q = quant(w̃), x ← x − deq(q) = Δ_j. */
static void SP_FN(column)(uint8_t *codes, SP_T *x, const SP_T *a, SP_T inv, const float *scale,
                          const uint8_t *zero, const float *mins, int gtype, int rows, int bits) {
    SP_T w[SP_GPTQ_CHUNK], dq[SP_GPTQ_CHUNK];
    if (gtype) { /* a gtype level: its code rule, y = s·(q − z) + m in float (sp_gtype_code) */
        const int maxq = (1 << bits) - 1;
        for (int i = 0; i < rows; i++) {
            float y;
            codes[i] = (uint8_t)sp_gtype_code((float)(x[i] + a[i] * inv), scale[i], zero[i],
                                              mins ? mins[i] : 0.0f, maxq, &y);
            x[i] -= (SP_T)y;
        }
        return;
    }
    for (int r0 = 0; r0 < rows; r0 += SP_GPTQ_CHUNK) {
        const int m = rows - r0 < SP_GPTQ_CHUNK ? rows - r0 : SP_GPTQ_CHUNK;
        SP_T *restrict xs = x + r0;
        const SP_T *restrict as = a + r0;
        for (int i = 0; i < m; i++) w[i] = xs[i] + as[i] * inv;
        SP_QCOLUMN(codes + r0, dq, w, scale + r0, zero + r0, m, bits);
        for (int i = 0; i < m; i++) xs[i] -= dq[i];
    }
}

/* Quantize rows r0 .. r0 + rows − 1 of the layer (W points at row r0) into out.
 *
 * Lazy batch updates, two levels: a panel of P >= B columns gets all updates from the
 * finished columns in one left-looking gemm (K = p1, the O(R·C²) part), blocks of B inside
 * it are updated right-looking after each block, and sub-blocks of SP_GPTQ_SUB columns inside
 * a block likewise; rank-1 updates within a sub-block. Every column j is quantized with
 * A_j = Σ_{m<j} Δ_m R_mj complete. The blocks of B (not the panels) are the reference's
 * blocks, which fix where lazy group parameters are taken. */
static sp_status SP_FN(rows)(const sp_gptq_ctx *c, const SP_FN(work) *wk, const float *W,
                             int rows, int r0, int bits, sp_qlayer *out, sp_err *err) {
    const int C = c->cols, gs = c->gs, ps = c->ps, B = c->o.block < C ? c->o.block : C;
    const int act = c->o.act_order, P = B * (B < SP_GPTQ_PANEL ? SP_GPTQ_PANEL / B : 1);
    const int lazy = !act && ps < C;
    const size_t Rn = (size_t)rows, Cn = (size_t)C, G = (size_t)out->n_groups;
    const SP_T *R = c->R;
    SP_T *X = wk->X, *Ap = wk->Ap, *V = wk->V, *S = wk->S, *Uin = wk->Uin, *Ae = wk->Ae;
    uint8_t *Ct = wk->Ct, *Pz = wk->Pz;
    float *Ps = wk->Ps;
    sp_status st = SP_OK;
    SP_FN(load_w)(X, W, c, Rn, Cn);

    /* Static groups: parameters of span g from the original columns g·ps .. (unchanged W). */
    if (!lazy)
        for (size_t g = 0; g < (Cn + (size_t)ps - 1) / (size_t)ps; g++) {
            const size_t c0 = g * (size_t)ps, n = Cn - c0 < (size_t)ps ? Cn - c0 : (size_t)ps;
            const SP_T *src = X + c0 * Rn; /* contiguous without act_order */
            if (act) {
                for (size_t k = 0; k < n; k++)
                    memcpy(V + k * Rn, X + (size_t)c->invperm[c0 + k] * Rn, Rn * sizeof(SP_T));
                src = V;
            }
            SP_FN(group_params)(c, wk, src, c0, rows, (int)n, bits);
        }

    SP_FN(loop_at) L = {0, 0, 0, 0, Ap, S, V, Uin, Ae};
    for (int p1 = 0; p1 < C; p1 += P) {
        const int p2 = p1 + P < C ? p1 + P : C;
        L.p1 = p1;
        L.p2 = p2;
        /* Panel: Ap = R[0:p1, p1:p2]ᵀ Δ[0:p1]. */
        if (p1 > 0)
            SP_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, p2 - p1, rows, p1, 1,
                    R + (size_t)p1 * Cn, C, X, rows, 0, Ap, rows);
        else
            memset(Ap, 0, (size_t)(p2 - p1) * Rn * sizeof(SP_T));
        for (int i1 = p1; i1 < p2; i1 += B) {
            const int i2 = i1 + B < p2 ? i1 + B : p2;
            SP_T *Ab = Ap + (size_t)(i1 - p1) * Rn; /* rows of this block */
            L.i1 = i1;
            L.i2 = i2;
            /* A snapshot is needed when a group starts strictly inside the block. */
            if (lazy && i1 > 0 && (i1 / ps + 1) * ps < i2)
                memcpy(S, Ab, (size_t)(i2 - i1) * Rn * sizeof(SP_T));
            for (int j1 = i1; j1 < i2; j1 += SP_GPTQ_SUB) {
                const int j2 = j1 + SP_GPTQ_SUB < i2 ? j1 + SP_GPTQ_SUB : i2;
                for (int j = j1; j < j2; j++) {
                    if (lazy && j % ps == 0) {
                        st = SP_FN(lazy_params)(c, &L, wk, X, j, rows, bits, err);
                        if (st != SP_OK) return st;
                    }
                    const size_t g = (size_t)((act ? c->perm[j] : j) / gs);
                    SP_T *x = X + (size_t)j * Rn;
                    SP_FN(column)(Ct + (size_t)j * Rn, x, Ab + (size_t)(j - i1) * Rn,
                                  1 / R[(size_t)j + (size_t)j * Cn], Ps + g * Rn, Pz + g * Rn,
                                  wk->Pm ? wk->Pm + g * Rn : NULL, c->gtype, rows, bits);
                    /* Rest of the sub-block: Ab[j+1:j2] += R[j, j+1:j2]ᵀ ⊗ Δ_j (rank 1). */
                    if (j + 1 < j2)
                        SP_GER(CblasRowMajor, j2 - j - 1, rows, 1,
                               R + (size_t)j + (size_t)(j + 1) * Cn, C, x, 1,
                               Ab + (size_t)(j + 1 - i1) * Rn, rows);
                }
                /* Rest of the block: Ab[j2:i2] += R[j1:j2, j2:i2]ᵀ Δ[j1:j2]. */
                if (j2 < i2)
                    SP_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, i2 - j2, rows, j2 - j1, 1,
                            R + (size_t)j1 + (size_t)j2 * Cn, C, X + (size_t)j1 * Rn, rows, 1,
                            Ab + (size_t)(j2 - i1) * Rn, rows);
            }
            /* Rest of the panel: Ap[i2:p2] += R[i1:i2, i2:p2]ᵀ Δ[i1:i2]. */
            if (i2 < p2)
                SP_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, p2 - i2, rows, i2 - i1, 1,
                        R + (size_t)i1 + (size_t)i2 * Cn, C, X + (size_t)i1 * Rn, rows, 1,
                        Ap + (size_t)(i2 - p1) * Rn, rows);
        }
    }

    /* Back to the original column order, row-major. */
    SP_FN(store_codes)(out->codes + (size_t)r0 * Cn, Ct, c->perm, Rn, Cn);
    for (size_t g = 0; g < G; g++)
        for (size_t r = 0; r < Rn; r++) {
            out->scales[(r0 + r) * G + g] = Ps[g * Rn + r];
            out->zeros[(r0 + r) * G + g] = Pz[g * Rn + r];
            if (out->mins) out->mins[(r0 + r) * G + g] = wk->Pm[g * Rn + r];
        }
    const size_t NS = (size_t)out->n_super;
    for (size_t b = 0; out->supers && b < NS; b++)
        for (size_t r = 0; r < Rn; r++)
            for (int t = 0; t < 2; t++)
                out->supers[((r0 + r) * NS + b) * 2 + t] = wk->Pd[(b * Rn + r) * 2 + t];
    return SP_OK;
}

/* The whole layer, in chunks of SP_GPTQ_ROWS rows (rows are independent in GPTQ): the buffers
 * are allocated once for a chunk and reused, which bounds memory (≈ 4·C·Rc·sizeof(T)) and
 * page faults, while the gemms keep N = Rc wide enough to run at full speed. */
static sp_status SP_FN(run)(const sp_gptq_ctx *c, const float *W, int rows, int bits,
                            sp_qlayer *out, sp_err *err) {
    const int C = c->cols, gs = c->ps, B = c->o.block < C ? c->o.block : C, act = c->o.act_order;
    const int P = B * (B < SP_GPTQ_PANEL ? SP_GPTQ_PANEL / B : 1);
    const int lazy = !act && gs < C, Rc = rows < SP_GPTQ_ROWS ? rows : SP_GPTQ_ROWS;
    const size_t Rn = (size_t)Rc, Cn = (size_t)C, G = (size_t)out->n_groups;
    const size_t gmax = (size_t)(gs < C ? gs : C), smax = (size_t)(B + gs < C ? B + gs : C);
    /* Does a lazy group (past the first block) run past the end of its panel? */
    int cross = 0;
    for (int g0 = B; lazy && g0 < C; g0 += gs)
        cross |= (g0 / P + 1) * P < (g0 + gs < C ? g0 + gs : C);
    sp_status st = SP_ENOMEM;
    SP_FN(work) wk = {0};
    wk.X = sp_malloc(Cn * Rn * sizeof(SP_T), err, "GPTQ weights");
    wk.Ap = sp_malloc((size_t)P * Rn * sizeof(SP_T), err, "GPTQ panel updates");
    wk.Ct = sp_malloc(Cn * Rn, err, "GPTQ codes");
    wk.Ps = sp_malloc(G * Rn * sizeof(float), err, "GPTQ scales");
    wk.Pz = sp_malloc(G * Rn, err, "GPTQ zeros");
    wk.V = sp_malloc(gmax * Rn * sizeof(SP_T), err, "GPTQ group columns");
    if (out->mins) wk.Pm = sp_malloc(G * Rn * sizeof(float), err, "GPTQ offsets");
    if (out->supers)
        wk.Pd = sp_malloc((size_t)out->n_super * Rn * 2 * sizeof(float), err, "GPTQ super-scales");
    if (lazy) {
        wk.S = sp_malloc((size_t)B * Rn * sizeof(SP_T), err, "GPTQ block snapshot");
        wk.Uin = sp_malloc(smax * smax * sizeof(SP_T), err, "GPTQ block inverse");
    }
    if (cross) wk.Ae = sp_malloc(gmax * Rn * sizeof(SP_T), err, "GPTQ group updates");
    if (wk.X && wk.Ap && wk.Ct && wk.Ps && wk.Pz && wk.V && (!lazy || (wk.S && wk.Uin)) &&
        (!cross || wk.Ae) && (!out->mins || wk.Pm) && (!out->supers || wk.Pd)) {
        st = SP_OK;
        for (int r0 = 0; r0 < rows && st == SP_OK; r0 += Rc)
            st = SP_FN(rows)(c, &wk, W + (size_t)r0 * Cn, rows - r0 < Rc ? rows - r0 : Rc, r0,
                             bits, out, err);
    }
    free(wk.X);
    free(wk.Ap);
    free(wk.Ct);
    free(wk.Ps);
    free(wk.Pz);
    free(wk.V);
    free(wk.S);
    free(wk.Uin);
    free(wk.Ae);
    free(wk.Pm);
    free(wk.Pd);
    return st;
}
