/* test_forward.c — sp_block_forward / sp_head_forward / RoPE against a naive reference.
 *
 * The reference below is deliberately plain: triple loops, double accumulation, attention
 * computed per query position with an explicit causal loop, RoPE angles in double from a
 * separate transcription of Hugging Face's Llama 3 rule. It shares no code with kernels/.
 *
 * Shape legend: T tokens, D dim, F hidden, Hq/Hkv heads, hd head dim, V vocabulary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sp_forward.h"
#include "kernels/sp_ops.h"
#include "common/sp_rng.h"

/* ---- deterministic random numbers ---------------------------------------------------- */

/* uniform in [-a, a) */
static float rng_unif(uint64_t *s, float a) {
    return (float)(((double)(sp_rng_next(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0) * a);
}

static float *rand_buf(uint64_t *s, size_t n, float center, float a) {
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = center + rng_unif(s, a);
    return p;
}

/* ---- a test-owned block (individual mallocs; mem_ unused) ------------------------------ */

static void rand_block(sp_block_weights *w, const sp_config *c, uint64_t *s) {
    size_t D = (size_t)c->dim, F = (size_t)c->hidden_dim;
    size_t qd = (size_t)(c->n_heads * c->head_dim), kvd = (size_t)(c->n_kv_heads * c->head_dim);
    memset(w, 0, sizeof *w);
    /* weights scaled by 1/sqrt(fan_in) so activations stay O(1) */
    w->attn_norm = rand_buf(s, D, 1.0f, 0.3f);
    w->wq = rand_buf(s, qd * D, 0.0f, 1.7f / sqrtf((float)D));
    w->wk = rand_buf(s, kvd * D, 0.0f, 1.7f / sqrtf((float)D));
    w->wv = rand_buf(s, kvd * D, 0.0f, 1.7f / sqrtf((float)D));
    if (c->qkv_bias) {
        w->bq = rand_buf(s, qd, 0.0f, 0.5f);
        w->bk = rand_buf(s, kvd, 0.0f, 0.5f);
        w->bv = rand_buf(s, kvd, 0.0f, 0.5f);
    }
    w->wo = rand_buf(s, D * qd, 0.0f, 1.7f / sqrtf((float)qd));
    w->ffn_norm = rand_buf(s, D, 1.0f, 0.3f);
    w->w_gate = rand_buf(s, F * D, 0.0f, 1.7f / sqrtf((float)D));
    w->w_up = rand_buf(s, F * D, 0.0f, 1.7f / sqrtf((float)D));
    w->w_down = rand_buf(s, D * F, 0.0f, 1.7f / sqrtf((float)F));
}

static void free_block(sp_block_weights *w) {
    float *p[] = {w->attn_norm, w->wq, w->wk, w->wv, w->bq, w->bk, w->bv,
                  w->wo, w->ffn_norm, w->w_gate, w->w_up, w->w_down};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
}

static sp_config small_config(int qkv_bias, int llama3) {
    sp_config c;
    memset(&c, 0, sizeof c);
    c.dim = 48;
    c.hidden_dim = 80;
    c.n_layers = 1;
    c.n_heads = 6;
    c.n_kv_heads = 2;
    c.head_dim = 8;
    c.vocab_size = 37;
    c.max_seq_len = 512;
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.qkv_bias = qkv_bias;
    if (llama3) {
        /* hd = 8: freqs 1, 0.1, 0.01, 0.001 -> wavelengths 6.3, 63, 628, 6283. With
         * orig 64, low 1, high 4: kept (< 16), smoothed (16..64), divided (> 64). */
        c.rope_scaling_llama3 = 1;
        c.rope_factor = 8.0f;
        c.rope_low_freq_factor = 1.0f;
        c.rope_high_freq_factor = 4.0f;
        c.rope_original_max_pos = 64;
    }
    c.bos_id = c.eos_id = -1;
    return c;
}

/* ---- the naive reference --------------------------------------------------------------- */

/* HF's vectorised _compute_llama3_parameters, transcribed element by element. */
static double naive_freq(const sp_config *c, int i) {
    double f = 1.0 / pow((double)c->rope_theta, (double)(2 * i) / (double)c->head_dim);
    if (!c->rope_scaling_llama3) return f;
    double low_wl = c->rope_original_max_pos / (double)c->rope_low_freq_factor;
    double high_wl = c->rope_original_max_pos / (double)c->rope_high_freq_factor;
    double wavelen = 2.0 * 3.14159265358979323846 / f;
    double fl = wavelen > low_wl ? f / c->rope_factor : f;
    double smooth = (c->rope_original_max_pos / wavelen - c->rope_low_freq_factor) /
                    (c->rope_high_freq_factor - c->rope_low_freq_factor);
    double smoothed = (1.0 - smooth) * fl / c->rope_factor + smooth * fl;
    int medium = !(wavelen < high_wl) && !(wavelen > low_wl);
    return medium ? smoothed : fl;
}

static void naive_rmsnorm(double *y, const double *x, const float *w, double eps, int T, int D) {
    for (int t = 0; t < T; t++) {
        double ss = 0.0;
        for (int j = 0; j < D; j++) ss += x[t * D + j] * x[t * D + j];
        double inv = 1.0 / sqrt(ss / D + eps);
        for (int j = 0; j < D; j++) y[t * D + j] = x[t * D + j] * inv * (double)w[j];
    }
}

/* y [T, n_out] = x [T, n_in] W[n_out, n_in]ᵀ + b */
static void naive_linear(double *y, const double *x, const float *W, const float *b, int T,
                         int n_in, int n_out) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < n_out; o++) {
            double acc = b ? (double)b[o] : 0.0;
            for (int j = 0; j < n_in; j++) acc += x[t * n_in + j] * (double)W[o * n_in + j];
            y[t * n_out + o] = acc;
        }
}

static void naive_rope(double *x, const sp_config *c, int T, int n_heads) {
    int hd = c->head_dim, half = hd / 2, ld = n_heads * hd;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < n_heads; h++)
            for (int i = 0; i < half; i++) {
                double ang = t * naive_freq(c, i);
                double *p = x + t * ld + h * hd;
                double a = p[i], b = p[i + half];
                p[i] = a * cos(ang) - b * sin(ang);
                p[i + half] = b * cos(ang) + a * sin(ang);
            }
}

/* x [T, D] in place, as float in and out, everything in between in double. */
static void naive_block(float *x, const sp_block_weights *w, const sp_config *c, int T) {
    int D = c->dim, F = c->hidden_dim, hd = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads;
    int qd = Hq * hd, kvd = Hkv * hd, G = Hq / Hkv;
    double *xd = calloc((size_t)T * D, sizeof(double)), *xn = calloc((size_t)T * D, 8);
    double *q = calloc((size_t)T * qd, 8), *k = calloc((size_t)T * kvd, 8);
    double *v = calloc((size_t)T * kvd, 8), *o = calloc((size_t)T * qd, 8);
    double *y = calloc((size_t)T * D, 8), *g = calloc((size_t)T * F, 8);
    double *u = calloc((size_t)T * F, 8), *p = calloc((size_t)T, 8);
    assert_true(xd && xn && q && k && v && o && y && g && u && p);
    for (int i = 0; i < T * D; i++) xd[i] = x[i];

    naive_rmsnorm(xn, xd, w->attn_norm, c->norm_eps, T, D);
    naive_linear(q, xn, w->wq, w->bq, T, D, qd);
    naive_linear(k, xn, w->wk, w->bk, T, D, kvd);
    naive_linear(v, xn, w->wv, w->bv, T, D, kvd);
    naive_rope(q, c, T, Hq);
    naive_rope(k, c, T, Hkv);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < Hq; h++) {
            int kh = h / G;
            double mx = -INFINITY, sum = 0.0;
            for (int s = 0; s <= t; s++) { /* causal: keys 0..t only */
                double dot = 0.0;
                for (int d = 0; d < hd; d++) dot += q[t * qd + h * hd + d] * k[s * kvd + kh * hd + d];
                p[s] = dot / sqrt((double)hd);
                if (p[s] > mx) mx = p[s];
            }
            for (int s = 0; s <= t; s++) sum += (p[s] = exp(p[s] - mx));
            for (int d = 0; d < hd; d++) {
                double acc = 0.0;
                for (int s = 0; s <= t; s++) acc += p[s] / sum * v[s * kvd + kh * hd + d];
                o[t * qd + h * hd + d] = acc;
            }
        }
    naive_linear(y, o, w->wo, NULL, T, qd, D);
    for (int i = 0; i < T * D; i++) xd[i] += y[i];
    naive_rmsnorm(xn, xd, w->ffn_norm, c->norm_eps, T, D);
    naive_linear(g, xn, w->w_gate, NULL, T, D, F);
    naive_linear(u, xn, w->w_up, NULL, T, D, F);
    for (int i = 0; i < T * F; i++) u[i] *= g[i] / (1.0 + exp(-g[i]));
    naive_linear(y, u, w->w_down, NULL, T, F, D);
    for (int i = 0; i < T * D; i++) x[i] = (float)(xd[i] + y[i]);
    free(xd); free(xn); free(q); free(k); free(v); free(o); free(y); free(g); free(u); free(p);
}

/* max |a - b| over n, divided by max(1, max |b|): a scale-aware relative error. */
static double rel_err(const float *a, const float *b, size_t n) {
    double e = 0.0, scale = 1.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > e || isnan(d)) e = isnan(d) ? INFINITY : d;
        if (fabs((double)b[i]) > scale) scale = fabs((double)b[i]);
    }
    return e / scale;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void check_block_vs_naive(int qkv_bias, int llama3, int T, uint64_t seed) {
    sp_config c = small_config(qkv_bias, llama3);
    uint64_t s = seed;
    sp_block_weights w;
    rand_block(&w, &c, &s);
    size_t n = (size_t)T * (size_t)c.dim;
    float *x = rand_buf(&s, n, 0.0f, 1.0f);   /* [T, D] */
    float *ref = malloc(n * sizeof *ref);     /* [T, D] */
    float *x0 = malloc(n * sizeof *x0);       /* [T, D] */
    assert_true(ref && x0);
    memcpy(ref, x, n * sizeof *x);
    memcpy(x0, x, n * sizeof *x);

    sp_block_scratch sc;
    sp_err err = {0};
    assert_int_equal(sp_block_scratch_alloc(&sc, &c, T + 5, &err), SP_OK);
    sp_block_forward(x, &w, &c, T, &sc);
    naive_block(ref, &w, &c, T);
    double e = rel_err(x, ref, n);
    if (e > 1e-5) printf("bias=%d llama3=%d T=%d: rel err %.3g\n", qkv_bias, llama3, T, e);
    assert_true(e <= 1e-5);
    /* the block must have changed x substantially (guards a no-op forward) */
    assert_true(rel_err(x, x0, n) > 0.05);
    sp_block_scratch_free(&sc);
    free(x); free(ref); free(x0);
    free_block(&w);
}

static void test_block_plain(void **st) { (void)st; check_block_vs_naive(0, 0, 13, 1); }
static void test_block_bias(void **st) { (void)st; check_block_vs_naive(1, 0, 13, 2); }
static void test_block_llama3(void **st) { (void)st; check_block_vs_naive(0, 1, 13, 3); }
static void test_block_bias_llama3(void **st) { (void)st; check_block_vs_naive(1, 1, 13, 4); }
static void test_block_single_token(void **st) { (void)st; check_block_vs_naive(1, 0, 1, 5); }
/* more than one attention tile (SP_ATTN_TILE = 256), last tile partial */
static void test_block_multi_tile(void **st) {
    (void)st;
    check_block_vs_naive(0, 1, 2 * SP_ATTN_TILE + 37, 6);
}

/* Changing token t0's input leaves rows before t0 bit-identical and changes row t0 on. */
static void test_causality(void **st) {
    (void)st;
    sp_config c = small_config(1, 1);
    uint64_t s = 11;
    int T = SP_ATTN_TILE + 20, t0 = SP_ATTN_TILE - 3; /* the change sits inside tile 0 */
    sp_block_weights w;
    rand_block(&w, &c, &s);
    size_t D = (size_t)c.dim, n = (size_t)T * D;
    float *a = rand_buf(&s, n, 0.0f, 1.0f), *b = malloc(n * sizeof(float));
    assert_non_null(b);
    memcpy(b, a, n * sizeof(float));
    for (size_t j = 0; j < D; j++) b[(size_t)t0 * D + j] += 0.5f;
    sp_block_scratch sc;
    assert_int_equal(sp_block_scratch_alloc(&sc, &c, T, NULL), SP_OK);
    sp_block_forward(a, &w, &c, T, &sc);
    sp_block_forward(b, &w, &c, T, &sc);
    assert_memory_equal(a, b, (size_t)t0 * D * sizeof(float));
    for (int t = t0; t < T; t++) {
        /* every later row sees the changed key/value */
        assert_true(rel_err(a + (size_t)t * D, b + (size_t)t * D, D) > 1e-7);
    }
    sp_block_scratch_free(&sc);
    free(a); free(b);
    free_block(&w);
}

/* Same window, same weights: same bytes, whatever ran in the scratch before. */
static void test_deterministic(void **st) {
    (void)st;
    sp_config c = small_config(0, 0);
    uint64_t s = 21;
    int T = 40;
    sp_block_weights w;
    rand_block(&w, &c, &s);
    size_t n = (size_t)T * (size_t)c.dim;
    float *a = rand_buf(&s, n, 0.0f, 1.0f), *b = malloc(n * sizeof(float));
    float *junk = rand_buf(&s, n, 0.0f, 3.0f);
    assert_non_null(b);
    memcpy(b, a, n * sizeof(float));
    sp_block_scratch sc;
    assert_int_equal(sp_block_scratch_alloc(&sc, &c, T, NULL), SP_OK);
    sp_block_forward(a, &w, &c, T, &sc);
    sp_block_forward(junk, &w, &c, T, &sc);
    sp_block_forward(b, &w, &c, T, &sc);
    assert_memory_equal(a, b, n * sizeof(float));
    sp_block_scratch_free(&sc);
    free(a); free(b); free(junk);
    free_block(&w);
}

/* The RoPE table against cos(t f_i), sin(t f_i) with f_i written out by hand. */
static void test_rope_table(void **st) {
    (void)st;
    for (int llama3 = 0; llama3 <= 1; llama3++) {
        sp_config c = small_config(0, llama3);
        int T = 600, half = c.head_dim / 2;
        double f[4];
        double base[4] = {1.0, 0.1, 0.01, 0.001}; /* 10000^(-2i/8) */
        for (int i = 0; i < 4; i++) f[i] = base[i];
        if (llama3) {
            /* i = 0: wavelen 6.28 < 64/4 -> kept. i = 2, 3: wavelen > 64/1 -> / 8.
             * i = 1: wavelen 62.83 in [16, 64] -> s = (64/62.83 - 1)/3, mix of f/8 and f. */
            double wl = 2.0 * 3.14159265358979323846 / 0.1;
            double sm = (64.0 / wl - 1.0) / 3.0;
            f[1] = (1.0 - sm) * 0.1 / 8.0 + sm * 0.1;
            f[2] = 0.01 / 8.0;
            f[3] = 0.001 / 8.0;
        }
        double inv[4];
        sp_rope_inv_freq(inv, &c);
        for (int i = 0; i < half; i++) {
            assert_true(fabs(inv[i] - f[i]) <= 1e-12 * f[i]);
            assert_true(fabs(naive_freq(&c, i) - f[i]) <= 1e-12 * f[i]);
        }
        float *ct = malloc((size_t)T * half * sizeof(float)), *stb = malloc((size_t)T * half * 4);
        assert_true(ct && stb);
        sp_rope_table(ct, stb, &c, (size_t)T);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < half; i++) {
                /* float storage of a double value: within half an ulp of 1 */
                assert_true(fabs(ct[t * half + i] - cos(t * f[i])) <= 6e-8);
                assert_true(fabs(stb[t * half + i] - sin(t * f[i])) <= 6e-8);
            }
        free(ct); free(stb);
    }
}

/* A rotation keeps each (x_i, x_{i+half}) pair's norm and rotates by t f_i. */
static void test_rope_apply(void **st) {
    (void)st;
    sp_config c = small_config(0, 0);
    int T = 3, hd = c.head_dim, half = hd / 2, H = 2, ld = H * hd + 5; /* padded rows */
    float ct[3 * 4], stb[3 * 4];
    sp_rope_table(ct, stb, &c, (size_t)T);
    float x[3 * 21];
    uint64_t s = 5;
    for (int i = 0; i < T * ld; i++) x[i] = rng_unif(&s, 1.0f);
    float x0[3 * 21];
    memcpy(x0, x, sizeof x);
    sp_rope_apply(x, ct, stb, (size_t)T, (size_t)ld, H, hd);
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < H; h++)
            for (int i = 0; i < half; i++) {
                double a = x0[t * ld + h * hd + i], b = x0[t * ld + h * hd + half + i];
                double ang = t * naive_freq(&c, i);
                assert_true(fabs(x[t * ld + h * hd + i] - (a * cos(ang) - b * sin(ang))) < 1e-6);
                assert_true(fabs(x[t * ld + h * hd + half + i] - (b * cos(ang) + a * sin(ang))) <
                            1e-6);
            }
        for (int j = H * hd; j < ld; j++) assert_true(x[t * ld + j] == x0[t * ld + j]);
    }
}

static void test_head_forward(void **st) {
    (void)st;
    sp_config c = small_config(0, 0);
    uint64_t s = 31;
    int T = 9, D = c.dim, nv = 37;
    float *x = rand_buf(&s, (size_t)T * D, 0.0f, 2.0f), *norm = rand_buf(&s, (size_t)D, 1.0f, 0.3f);
    float *head = rand_buf(&s, (size_t)nv * D, 0.0f, 0.3f);
    float *xn = malloc((size_t)T * D * sizeof(float)), *lg = malloc((size_t)T * nv * 4);
    float *ref = malloc((size_t)T * nv * sizeof(float));
    double *xd = malloc((size_t)T * D * 8), *xnd = malloc((size_t)T * D * 8);
    double *lgd = malloc((size_t)T * nv * 8);
    assert_true(xn && lg && ref && xd && xnd && lgd);
    sp_head_forward(lg, xn, x, norm, head, &c, T, nv);
    for (int i = 0; i < T * D; i++) xd[i] = x[i];
    naive_rmsnorm(xnd, xd, norm, c.norm_eps, T, D);
    naive_linear(lgd, xnd, head, NULL, T, D, nv);
    for (int i = 0; i < T * nv; i++) ref[i] = (float)lgd[i];
    assert_true(rel_err(lg, ref, (size_t)T * nv) <= 1e-5);
    free(x); free(norm); free(head); free(xn); free(lg); free(ref); free(xd); free(xnd); free(lgd);
}

static void test_scratch_rejects_bad_config(void **st) {
    (void)st;
    sp_block_scratch sc;
    sp_err err = {0};
    sp_config c = small_config(0, 0);
    c.head_dim = 7;
    assert_int_equal(sp_block_scratch_alloc(&sc, &c, 4, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "head_dim"));
    c = small_config(0, 0);
    c.n_kv_heads = 4;
    assert_int_equal(sp_block_scratch_alloc(&sc, &c, 4, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "n_kv_heads"));
    c = small_config(0, 0);
    assert_int_equal(sp_block_scratch_alloc(&sc, &c, 0, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "max_T"));
}

/* ---- the bundled real model: every layer and the head against the naive reference ------ */

static void test_real_model(void **st) {
    (void)st;
    sp_err err = {0};
    sp_model *m = NULL;
    sp_status rc = sp_model_open(&m, SP_TEST_MODEL_DIR, &err);
    if (rc != SP_OK) printf("sp_model_open: %s\n", err.msg);
    assert_int_equal(rc, SP_OK);
    const sp_config *c = sp_model_config(m);
    int T = 24, D = c->dim, V = c->vocab_size;
    int32_t ids[24];
    uint64_t s = 41;
    ids[0] = 1; /* BOS */
    for (int t = 1; t < T; t++) ids[t] = (int32_t)(sp_rng_next(&s) % (uint64_t)V);
    size_t n = (size_t)T * (size_t)D;
    float *x = malloc(n * sizeof(float)), *ref = malloc(n * sizeof(float));
    float *xn = malloc(n * sizeof(float)), *norm = malloc((size_t)D * sizeof(float));
    float *head = malloc((size_t)V * D * sizeof(float));
    float *lg = malloc((size_t)T * V * sizeof(float)), *lg_ref = malloc((size_t)T * V * 4);
    assert_true(x && ref && xn && norm && head && lg && lg_ref);
    assert_int_equal(sp_model_embed(m, ids, (size_t)T, x, &err), SP_OK);
    memcpy(ref, x, n * sizeof(float));

    sp_block_weights w;
    sp_block_scratch sc;
    assert_int_equal(sp_block_weights_alloc(&w, c, &err), SP_OK);
    assert_int_equal(sp_block_scratch_alloc(&sc, c, T, &err), SP_OK);
    for (int l = 0; l < c->n_layers; l++) {
        assert_int_equal(sp_model_load_block(m, l, &w, &err), SP_OK);
        sp_block_forward(x, &w, c, T, &sc);
        naive_block(ref, &w, c, T);
        assert_true(rel_err(x, ref, n) <= 1e-5);
    }
    assert_int_equal(sp_model_read_final_norm(m, norm, &err), SP_OK);
    assert_int_equal(sp_model_read_head_rows(m, 0, V, head, &err), SP_OK);
    sp_head_forward(lg, xn, x, norm, head, c, T, V);
    {
        double *xd = malloc(n * 8), *xnd = malloc(n * 8), *lgd = malloc((size_t)T * V * 8);
        assert_true(xd && xnd && lgd);
        for (size_t i = 0; i < n; i++) xd[i] = ref[i];
        naive_rmsnorm(xnd, xd, norm, c->norm_eps, T, D);
        naive_linear(lgd, xnd, head, NULL, T, D, V);
        for (size_t i = 0; i < (size_t)T * V; i++) lg_ref[i] = (float)lgd[i];
        free(xd); free(xnd); free(lgd);
    }
    assert_true(rel_err(lg, lg_ref, (size_t)T * V) <= 1e-4);
    sp_block_scratch_free(&sc);
    sp_block_weights_free(&w);
    sp_model_close(m);
    free(x); free(ref); free(xn); free(norm); free(head); free(lg); free(lg_ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_plain),
        cmocka_unit_test(test_block_bias),
        cmocka_unit_test(test_block_llama3),
        cmocka_unit_test(test_block_bias_llama3),
        cmocka_unit_test(test_block_single_token),
        cmocka_unit_test(test_block_multi_tile),
        cmocka_unit_test(test_causality),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_rope_table),
        cmocka_unit_test(test_rope_apply),
        cmocka_unit_test(test_head_forward),
        cmocka_unit_test(test_scratch_rejects_bad_config),
        cmocka_unit_test(test_real_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
