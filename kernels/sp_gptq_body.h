/* sp_gptq_body.h — private to sp_gptq.c, which includes it twice: once with SP_T = float
 * (SP_GPTQ_F32) and once with SP_T = double (SP_GPTQ_F64). Not a public header.
 *
 * Expects: SP_T, SP_FN(name) (name with a type suffix), SP_GEMM, SP_GER, SP_AXPY, SP_COPY,
 * SP_POTRF, SP_TRTRI, SP_QPARAMS, SP_QCOLUMN, and struct sp_gptq_ctx / SP_GPTQ_SUB / SP_GPTQ_RETRIES from
 * sp_gptq.c. Shape legend as in sp_gptq.h; C = ctx->cols, R = rows.
 *
 * Layouts inside the loop (all "transposed": one column of W is contiguous):
 *   X   [C, R]  row j = W[:, perm[j]] (dead columns 0); after column j is quantized, row j
 *               holds Δ_j = W_j − Q_j instead
 *   Ab  [B, R]  row t = A_{i1+t} = Σ_{m<i1+t} Δ_m R_m,i1+t for the current block [i1, i2):
 *               set at the block start by one gemm over all finished columns (left-looking
 *               lazy batch update, K = i1), then updated column by column inside the block
 *   Ct  [C, R]  codes of permuted column j
 *   Ps, Pz [G, R]  group parameters, row g = group g
 *   R   [C, C]  column-major, R(i, j) = R[i + j·C] for i <= j, 0 below: H + λI = R Rᵀ
 */

/* Factorize J·P·(H_fix + λI)·Pᵀ·J = L Lᵀ (lower, column-major) and reverse the buffer in
 * place, which turns it into R = J L J (upper), column-major. Retries with damp × 10. */
static sp_status SP_FN(factor)(sp_gptq_ctx *c, const double *H, const double *dfix, double mean,
                               sp_err *err) {
    const size_t n = (size_t)c->cols;
    SP_T *a = sp_calloc(n * n, sizeof(SP_T), err, "GPTQ Cholesky factor");
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

/* Lazy group parameters (no act_order) for the group starting at column j of the block
 * [i1, i2): from the reference's W at the start of the block, i.e. for c in [j, e)
 *   V_c = W_c + Σ_{i1<=m<=c} A0_m U_mc,   U = R⁻¹ on [i1, e), A0_m = Σ_{k<i1} Δ_k R_km
 * (sp_gptq.h derives it). A0 for m < i2 is Ab itself while j == i1, else its snapshot S; for
 * m >= i2 (a group running past the block) it is computed here into Ae. */
static sp_status SP_FN(lazy_params)(const sp_gptq_ctx *c, SP_T *V, SP_T *Uin, SP_T *Ae,
                                    float *Ps, uint8_t *Pz, const SP_T *X, const SP_T *Ab,
                                    const SP_T *S, int j, int i1, int i2, int rows, int bits,
                                    sp_err *err) {
    const int C = c->cols, gs = c->gs;
    const size_t Rn = (size_t)rows, Cn = (size_t)C;
    const int e = j + gs < C ? j + gs : C, n = e - j;
    const SP_T *R = c->R;
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
        /* V[t, :] += Σ_k U(m0 + k, j + t) · A0[m0 + k, :]: row-major operand with ld = s. */
        const int k1 = (i2 < e ? i2 : e) - i1;
        SP_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, rows, k1, 1,
                Uin + (size_t)(j - i1) * sn, s, j == i1 ? Ab : S, rows, 1, V, rows);
        if (e > i2) {
            /* A0[i2:e] = R[0:i1, i2:e]ᵀ Δ[0:i1] */
            SP_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, e - i2, rows, i1, 1,
                    R + (size_t)i2 * Cn, C, X, rows, 0, Ae, rows);
            SP_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, rows, e - i2, 1,
                    Uin + (size_t)(i2 - i1) + (size_t)(j - i1) * sn, s, Ae, rows, 1, V, rows);
        }
    }
    SP_QPARAMS(Ps, Pz, 1, V, 1, Rn, rows, n, bits, c->o.sym, c->o.mse);
    return SP_OK;
}

/* The column loop; fills out (already allocated) in the original column order. */
static sp_status SP_FN(run)(const sp_gptq_ctx *c, const float *W, int rows, int bits,
                            sp_qlayer *out, sp_err *err) {
    const int C = c->cols, gs = c->gs, B = c->o.block < C ? c->o.block : C, act = c->o.act_order;
    const int lazy = !act && gs < C;
    const size_t Rn = (size_t)rows, Cn = (size_t)C, G = (size_t)out->n_groups;
    const size_t gmax = (size_t)(gs < C ? gs : C), smax = (size_t)(B + gs < C ? B + gs : C);
    const SP_T *R = c->R;
    /* Does a lazy group run past the end of its block (then A0 is needed beyond the block)? */
    int cross = 0;
    for (int g0 = 0; lazy && g0 < C; g0 += gs) {
        int nb = (g0 / B + 1) * B, e = g0 + gs < C ? g0 + gs : C;
        cross |= g0 >= B && nb < e;
    }
    sp_status st = SP_ENOMEM;
    SP_T *X = sp_malloc(Cn * Rn * sizeof(SP_T), err, "GPTQ weights");
    SP_T *Ab = sp_malloc((size_t)B * Rn * sizeof(SP_T), err, "GPTQ block updates");
    uint8_t *Ct = sp_malloc(Cn * Rn, err, "GPTQ codes");
    float *Ps = sp_malloc(G * Rn * sizeof(float), err, "GPTQ scales");
    uint8_t *Pz = sp_malloc(G * Rn, err, "GPTQ zeros");
    SP_T *V = sp_malloc(gmax * Rn * sizeof(SP_T), err, "GPTQ group columns");
    SP_T *wq = sp_malloc(2 * Rn * sizeof(SP_T), err, "GPTQ column");
    SP_T *S = lazy ? sp_malloc((size_t)B * Rn * sizeof(SP_T), err, "GPTQ block snapshot") : NULL;
    SP_T *Uin = lazy ? sp_malloc(smax * smax * sizeof(SP_T), err, "GPTQ block inverse") : NULL;
    SP_T *Ae = cross ? sp_malloc(gmax * Rn * sizeof(SP_T), err, "GPTQ group updates") : NULL;
    if (!X || !Ab || !Ct || !Ps || !Pz || !V || !wq || (lazy && (!S || !Uin)) || (cross && !Ae))
        goto done;
    SP_T *wcol = wq, *dq = wq + Rn;

    /* X = W[:, perm]ᵀ with dead columns zeroed, in 32 x 32 tiles. */
    for (size_t r0 = 0; r0 < Rn; r0 += 32)
        for (size_t j0 = 0; j0 < Cn; j0 += 32)
            for (size_t j = j0; j < j0 + 32 && j < Cn; j++) {
                const size_t pc = (size_t)c->perm[j];
                SP_T *x = X + j * Rn;
                for (size_t r = r0; r < r0 + 32 && r < Rn; r++)
                    x[r] = c->dead[pc] ? 0 : (SP_T)W[r * Cn + pc];
            }

    /* Static groups: parameters of group g from the original columns g·gs .. (unchanged W). */
    if (!lazy)
        for (size_t g = 0; g < G; g++) {
            const size_t c0 = g * (size_t)gs, n = Cn - c0 < (size_t)gs ? Cn - c0 : (size_t)gs;
            const SP_T *src = X + c0 * Rn; /* contiguous without act_order */
            if (act) {
                for (size_t k = 0; k < n; k++)
                    memcpy(V + k * Rn, X + (size_t)c->invperm[c0 + k] * Rn, Rn * sizeof(SP_T));
                src = V;
            }
            SP_QPARAMS(Ps + g * Rn, Pz + g * Rn, 1, src, 1, Rn, rows, (int)n, bits, c->o.sym,
                       c->o.mse);
        }

    for (int i1 = 0; i1 < C; i1 += B) {
        const int i2 = i1 + B < C ? i1 + B : C;
        /* The lazy batch update, left-looking: Ab = R[0:i1, i1:i2]ᵀ Δ[0:i1] (the O(R·C²)
         * part, one gemm with K = i1). */
        if (i1 > 0)
            SP_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, i2 - i1, rows, i1, 1,
                    R + (size_t)i1 * Cn, C, X, rows, 0, Ab, rows);
        else
            memset(Ab, 0, (size_t)(i2 - i1) * Rn * sizeof(SP_T));
        /* The snapshot is needed when a group starts strictly inside the block (and A != 0). */
        if (lazy && i1 > 0 && (i1 / gs + 1) * gs < i2)
            memcpy(S, Ab, (size_t)(i2 - i1) * Rn * sizeof(SP_T));
        for (int j1 = i1; j1 < i2; j1 += SP_GPTQ_SUB) {
            const int j2 = j1 + SP_GPTQ_SUB < i2 ? j1 + SP_GPTQ_SUB : i2;
            for (int j = j1; j < j2; j++) {
                if (lazy && j % gs == 0) {
                    const size_t gl = (size_t)(j / gs);
                    st = SP_FN(lazy_params)(c, V, Uin, Ae, Ps + gl * Rn, Pz + gl * Rn, X, Ab, S,
                                            j, i1, i2, rows, bits, err);
                    if (st != SP_OK) goto done;
                }
                const size_t g = (size_t)((act ? c->perm[j] : j) / gs);
                SP_T *x = X + (size_t)j * Rn;
                const SP_T *a = Ab + (size_t)(j - i1) * Rn;
                /* w̃_j = W_j + A_j / R_jj, then Δ_j = W_j − deq(q_j) replaces W_j in X. */
                SP_COPY(rows, x, 1, wcol, 1);
                SP_AXPY(rows, 1 / R[(size_t)j + (size_t)j * Cn], a, 1, wcol, 1);
                SP_QCOLUMN(Ct + (size_t)j * Rn, dq, wcol, Ps + g * Rn, Pz + g * Rn, rows, bits);
                SP_AXPY(rows, -1, dq, 1, x, 1);
                /* Rest of the sub-block: Ab[j+1:j2] += R[j, j+1:j2]ᵀ ⊗ Δ_j (rank 1). */
                if (j + 1 < j2)
                    SP_GER(CblasRowMajor, j2 - j - 1, rows, 1, R + (size_t)j + (size_t)(j + 1) * Cn,
                           C, x, 1, Ab + (size_t)(j + 1 - i1) * Rn, rows);
            }
            /* Rest of the block: Ab[j2:i2] += R[j1:j2, j2:i2]ᵀ Δ[j1:j2]. */
            if (j2 < i2)
                SP_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, i2 - j2, rows, j2 - j1, 1,
                        R + (size_t)j1 + (size_t)j2 * Cn, C, X + (size_t)j1 * Rn, rows, 1,
                        Ab + (size_t)(j2 - i1) * Rn, rows);
        }
    }

    /* Back to the original column order, row-major. */
    for (size_t r0 = 0; r0 < Rn; r0 += 32)
        for (size_t j0 = 0; j0 < Cn; j0 += 32)
            for (size_t j = j0; j < j0 + 32 && j < Cn; j++) {
                const size_t pc = (size_t)c->perm[j];
                const uint8_t *q = Ct + j * Rn;
                for (size_t r = r0; r < r0 + 32 && r < Rn; r++) out->codes[r * Cn + pc] = q[r];
            }
    for (size_t g = 0; g < G; g++)
        for (size_t r = 0; r < Rn; r++) {
            out->scales[r * G + g] = Ps[g * Rn + r];
            out->zeros[r * G + g] = Pz[g * Rn + r];
        }
    st = SP_OK;
done:
    free(X);
    free(Ab);
    free(Ct);
    free(Ps);
    free(Pz);
    free(V);
    free(wq);
    free(S);
    free(Uin);
    free(Ae);
    return st;
}
