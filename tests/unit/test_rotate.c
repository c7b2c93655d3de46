/* test_rotate.c — kernels/sp_rotate (issue 23).
 *
 * Independent checks: the Hadamard bases by H Hᵀ = m I and ±1 entries; the fast transform
 * against the dense Kronecker product diag(s)(H_m ⊗ H_p)/√n written out here (entry by entry,
 * with the Sylvester sign (−1)^popcount(b & d)); Q Qᵀ = I for both kinds; sp_rotate_cols
 * against a naive Qᵀ·W with Q read from sp_rotate_rows of the identity; and the whole point:
 * a model with its norms folded and rotated gives the same logits as the original (forward
 * with sp_block_forward/sp_head_forward) — a random 2-block GQA model with q/k/v biases,
 * random norms and a tied head, and the bundled stories260K through sp_model.
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
#include "kernels/sp_rotate.h"
#include "shards/sp_model.h"
#include "common/sp_rng.h"

static float rng_unif(uint64_t *s, float a) {
    return (float)(((double)(sp_rng_next(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0) * a);
}

static float *rand_buf(uint64_t *s, size_t n, float center, float a) {
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = center + rng_unif(s, a);
    return p;
}

/* ---- bases ---------------------------------------------------------------------------- */

static void test_hadamard_bases(void **state) {
    (void)state;
    /* Sylvester 1, 2; Paley I (p ≡ 3 mod 4): 4, 8, 12, 20, 24, 32, 44, 48, 60; Paley II
     * (p ≡ 1 mod 4): 28 (p = 13), 36 (17), 76 (37) */
    const int ok[] = {1, 2, 4, 8, 12, 20, 24, 28, 32, 36, 44, 48, 60, 76};
    for (size_t t = 0; t < sizeof ok / sizeof ok[0]; t++) {
        int m = ok[t];
        int *h = malloc((size_t)m * m * sizeof(int));
        assert_non_null(h);
        sp_err err = {0};
        assert_int_equal(sp_rotate_hadamard_base(m, h, &err), SP_OK);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++) {
                assert_true(h[i * m + j] == 1 || h[i * m + j] == -1);
                long dot = 0;
                for (int k = 0; k < m; k++) dot += h[i * m + k] * h[j * m + k];
                if (dot != (i == j ? m : 0)) fail_msg("order %d: row %d · row %d = %ld", m, i, j, dot);
            }
        free(h);
    }
    int h[64];
    sp_err err = {0};
    assert_int_equal(sp_rotate_hadamard_base(6, h, &err), SP_EUNSUPPORTED);
    assert_int_equal(sp_rotate_hadamard_base(3, h, &err), SP_EUNSUPPORTED);
}

/* Q (n×n, row-major, double) read back as the rows e_i·Q. */
static double *dense_q(const sp_rotate *r) {
    int n = sp_rotate_order(r);
    float *x = calloc((size_t)n * n, sizeof(float));
    double *q = malloc((size_t)n * n * sizeof(double));
    assert_true(x && q);
    for (int i = 0; i < n; i++) x[(size_t)i * n + i] = 1.0f;
    sp_err err = {0};
    assert_int_equal(sp_rotate_rows(r, x, (size_t)n, (size_t)n, &err), SP_OK);
    for (size_t i = 0; i < (size_t)n * n; i++) q[i] = x[i];
    free(x);
    return q;
}

static void check_orthogonal(const double *q, int n, double tol) {
    double worst = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += q[i * n + k] * q[j * n + k];
            double e = fabs(s - (i == j));
            worst = e > worst ? e : worst;
        }
    if (worst > tol) fail_msg("n %d: |Q Qᵀ − I| = %g > %g", n, worst, tol);
}

static int popcount(unsigned v) {
    int c = 0;
    for (; v; v &= v - 1) c++;
    return c;
}

static void test_hadamard_structure(void **state) {
    (void)state;
    const int ns[] = {8, 64, 48, 80, 112, 96, 256, 896};
    const int ms[] = {1, 1, 12, 20, 28, 12, 1, 28};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        int n = ns[t];
        sp_rotate *r = NULL;
        sp_err err = {0};
        assert_int_equal(sp_rotate_create(&r, SP_ROTATE_HADAMARD, n, 42 + t, &err), SP_OK);
        int m = sp_rotate_hadamard_m(r), p = n / m;
        assert_int_equal(m, ms[t]);
        double *q = dense_q(r);
        check_orthogonal(q, n, 1e-6);
        int *hm = malloc((size_t)m * m * sizeof(int));
        assert_non_null(hm);
        assert_int_equal(sp_rotate_hadamard_base(m, hm, &err), SP_OK);
        /* Q[i][j] = s_i H_m[a][c] H_p[b][d] / √n, i = a·p + b, j = c·p + d; the signs s_i
         * are read from column 0 and must be ±1 and fit every other column. */
        double sc = 1.0 / sqrt((double)n);
        int plus = 0;
        for (int i = 0; i < n; i++) {
            int a = i / p, b = i % p;
            double si = q[(size_t)i * n] / (hm[a * m] * sc);
            assert_true(fabs(fabs(si) - 1.0) < 1e-6);
            plus += si > 0;
            for (int j = 0; j < n; j++) {
                int c = j / p, d = j % p;
                double want = si * hm[a * m + c] * ((popcount((unsigned)(b & d)) & 1) ? -1 : 1) * sc;
                if (fabs(q[(size_t)i * n + j] - want) > 1e-6)
                    fail_msg("n %d: Q[%d][%d] = %g, the Kronecker product gives %g", n, i, j,
                             q[(size_t)i * n + j], want);
            }
        }
        /* the signs are random: neither all + nor all − */
        assert_true(plus > 0 && plus < n);
        free(hm);
        free(q);
        sp_rotate_free(r);
    }
    /* sizes with no construction are refused in one line naming the size */
    const int bad[] = {6, 22, 45, 7};
    for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
        sp_rotate *r = NULL;
        sp_err err = {0};
        assert_int_equal(sp_rotate_create(&r, SP_ROTATE_HADAMARD, bad[t], 1, &err), SP_EUNSUPPORTED);
        assert_null(r);
        char want[32];
        snprintf(want, sizeof want, "size %d", bad[t]);
        assert_non_null(strstr(err.msg, want));
        assert_null(strchr(err.msg, '\n'));
    }
}

static void test_orthogonal(void **state) {
    (void)state;
    sp_rotate *a = NULL, *b = NULL, *c = NULL;
    sp_err err = {0};
    assert_int_equal(sp_rotate_create(&a, SP_ROTATE_ORTHOGONAL, 72, 7, &err), SP_OK);
    assert_int_equal(sp_rotate_create(&b, SP_ROTATE_ORTHOGONAL, 72, 7, &err), SP_OK);
    assert_int_equal(sp_rotate_create(&c, SP_ROTATE_ORTHOGONAL, 72, 8, &err), SP_OK);
    double *qa = dense_q(a), *qb = dense_q(b), *qc = dense_q(c);
    check_orthogonal(qa, 72, 1e-6);
    check_orthogonal(qc, 72, 1e-6);
    assert_memory_equal(qa, qb, 72 * 72 * sizeof(double)); /* the seed fixes every bit */
    int differ = 0;
    for (int i = 0; i < 72 * 72; i++) differ += qa[i] != qc[i];
    assert_true(differ > 72 * 72 / 2);
    /* not a signed permutation: the mass is spread (max |Q_ij| well below 1) */
    double mx = 0;
    for (int i = 0; i < 72 * 72; i++) mx = fabs(qa[i]) > mx ? fabs(qa[i]) : mx;
    assert_true(mx < 0.7);
    free(qa);
    free(qb);
    free(qc);
    sp_rotate_free(a);
    sp_rotate_free(b);
    sp_rotate_free(c);
}

/* rows and cols against naive products with the dense Q, strides included */
static void test_rows_cols(void **state) {
    (void)state;
    for (int kind = SP_ROTATE_HADAMARD; kind <= SP_ROTATE_ORTHOGONAL; kind++) {
        int n = 48, cols = 300, ld = 310; /* cols > the 256-column chunk */
        sp_rotate *r = NULL;
        sp_err err = {0};
        assert_int_equal(sp_rotate_create(&r, kind, n, 3, &err), SP_OK);
        double *q = dense_q(r);
        uint64_t s = 9;
        float *w = rand_buf(&s, (size_t)n * ld, 0.0f, 1.0f);
        float *w0 = malloc((size_t)n * ld * sizeof(float));
        assert_non_null(w0);
        memcpy(w0, w, (size_t)n * ld * sizeof(float));
        assert_int_equal(sp_rotate_cols(r, w, (size_t)cols, (size_t)ld, &err), SP_OK);
        for (int i = 0; i < n; i++)
            for (int c = 0; c < ld; c++) {
                double want = w0[(size_t)i * ld + c];
                if (c < cols) {
                    want = 0;
                    for (int k = 0; k < n; k++) want += q[(size_t)k * n + i] * w0[(size_t)k * ld + c];
                }
                if (fabs(w[(size_t)i * ld + c] - want) > 1e-5)
                    fail_msg("kind %d: (Qᵀ W)[%d][%d] = %g, want %g", kind, i, c,
                             w[(size_t)i * ld + c], want);
            }
        /* rows with a stride: x·Q, the padding untouched */
        memcpy(w, w0, (size_t)n * ld * sizeof(float));
        int rows = 5, lds = n + 3;
        assert_int_equal(sp_rotate_rows(r, w, (size_t)rows, (size_t)lds, &err), SP_OK);
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < lds; j++) {
                double want = w0[(size_t)i * lds + j];
                if (j < n) {
                    want = 0;
                    for (int k = 0; k < n; k++) want += w0[(size_t)i * lds + k] * q[(size_t)k * n + j];
                }
                assert_true(fabs(w[(size_t)i * lds + j] - want) <= 1e-5);
            }
        free(w);
        free(w0);
        free(q);
        sp_rotate_free(r);
    }
}

/* ---- the same model ----------------------------------------------------------------------- */

typedef struct {
    sp_config c;
    float *embed, *norm, *head; /* head == embed when tied */
    sp_block_weights *blocks;
} toy_model;

static void rand_block(sp_block_weights *w, const sp_config *c, uint64_t *s) {
    size_t D = (size_t)c->dim, F = (size_t)c->hidden_dim;
    size_t qd = (size_t)(c->n_heads * c->head_dim), kvd = (size_t)(c->n_kv_heads * c->head_dim);
    memset(w, 0, sizeof *w);
    w->attn_norm = rand_buf(s, D, 1.0f, 0.5f);
    w->wq = rand_buf(s, qd * D, 0.0f, 1.7f / sqrtf((float)D));
    w->wk = rand_buf(s, kvd * D, 0.0f, 1.7f / sqrtf((float)D));
    w->wv = rand_buf(s, kvd * D, 0.0f, 1.7f / sqrtf((float)D));
    w->bq = rand_buf(s, qd, 0.0f, 0.5f);
    w->bk = rand_buf(s, kvd, 0.0f, 0.5f);
    w->bv = rand_buf(s, kvd, 0.0f, 0.5f);
    w->wo = rand_buf(s, D * qd, 0.0f, 1.7f / sqrtf((float)qd));
    w->ffn_norm = rand_buf(s, D, 1.0f, 0.5f);
    w->w_gate = rand_buf(s, F * D, 0.0f, 1.7f / sqrtf((float)D));
    w->w_up = rand_buf(s, F * D, 0.0f, 1.7f / sqrtf((float)D));
    w->w_down = rand_buf(s, D * F, 0.0f, 1.7f / sqrtf((float)F));
}

static void free_block(sp_block_weights *w) {
    float *p[] = {w->attn_norm, w->wq, w->wk, w->wv, w->bq, w->bk, w->bv,
                  w->wo, w->ffn_norm, w->w_gate, w->w_up, w->w_down};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
}

/* logits [T, V] of ids through embed, blocks, norm, head */
static void toy_logits(const toy_model *m, const int *ids, int T, float *logits) {
    const sp_config *c = &m->c;
    size_t D = (size_t)c->dim;
    float *x = malloc((size_t)T * D * sizeof(float)), *xn = malloc((size_t)T * D * sizeof(float));
    assert_true(x && xn);
    for (int t = 0; t < T; t++) memcpy(x + t * D, m->embed + (size_t)ids[t] * D, D * sizeof(float));
    sp_block_scratch s;
    sp_err err = {0};
    assert_int_equal(sp_block_scratch_alloc(&s, c, T, &err), SP_OK);
    for (int l = 0; l < c->n_layers; l++) sp_block_forward(x, &m->blocks[l], c, T, &s);
    sp_head_forward(logits, xn, x, m->norm, m->head, c, T, c->vocab_size);
    sp_block_scratch_free(&s);
    free(x);
    free(xn);
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

static void test_toy_model_same_function(void **state) {
    (void)state;
    for (int kind = SP_ROTATE_HADAMARD; kind <= SP_ROTATE_ORTHOGONAL; kind++) {
        toy_model m;
        memset(&m, 0, sizeof m);
        sp_config *c = &m.c;
        c->dim = 48; /* 4 · 12: a Paley base */
        c->hidden_dim = 80;
        c->n_layers = 2;
        c->n_heads = 6;
        c->n_kv_heads = 2; /* GQA, G = 3 */
        c->head_dim = 8;
        c->vocab_size = 37;
        c->max_seq_len = 64;
        c->norm_eps = 1e-5f;
        c->rope_theta = 10000.0f;
        c->qkv_bias = 1;
        c->tie_embeddings = 1;
        uint64_t s = 11;
        size_t D = 48, V = 37;
        m.embed = rand_buf(&s, V * D, 0.0f, 1.0f);
        m.head = m.embed; /* tied */
        m.norm = rand_buf(&s, D, 1.0f, 0.5f);
        m.blocks = calloc(2, sizeof *m.blocks);
        assert_non_null(m.blocks);
        for (int l = 0; l < 2; l++) rand_block(&m.blocks[l], c, &s);
        int T = 20, ids[20];
        for (int t = 0; t < T; t++) ids[t] = (int)(sp_rng_next(&s) % V);
        float *ref = malloc((size_t)T * V * sizeof(float)), *got = malloc((size_t)T * V * sizeof(float));
        assert_true(ref && got);
        toy_logits(&m, ids, T, ref);

        /* rotate: the tied head becomes an explicit copy, folded and rotated */
        sp_rotation rot;
        sp_err err = {0};
        assert_int_equal(sp_rotation_init(&rot, kind, 5, c, &err), SP_OK);
        float *head = malloc(V * D * sizeof(float));
        assert_non_null(head);
        memcpy(head, m.embed, V * D * sizeof(float));
        assert_int_equal(sp_rotation_head(&rot, head, V, m.norm, c, &err), SP_OK);
        assert_int_equal(sp_rotation_embed(&rot, m.embed, V, &err), SP_OK);
        for (int l = 0; l < 2; l++) {
            assert_int_equal(sp_rotation_block(&rot, &m.blocks[l], c, &err), SP_OK);
            for (size_t i = 0; i < D; i++)
                assert_true(m.blocks[l].attn_norm[i] == 1.0f && m.blocks[l].ffn_norm[i] == 1.0f);
        }
        for (size_t i = 0; i < D; i++) m.norm[i] = 1.0f;
        m.head = head;
        toy_logits(&m, ids, T, got);
        double scale = max_abs(ref, (size_t)T * V), worst = 0;
        for (size_t i = 0; i < (size_t)T * V; i++)
            worst = fabs(ref[i] - got[i]) > worst ? fabs(ref[i] - got[i]) : worst;
        printf("toy model, %s: max |Δlogit| = %.3g (max |logit| %.3g)\n", sp_rotate_name(kind),
               worst, scale);
        if (worst > 2e-5 * (scale > 1 ? scale : 1))
            fail_msg("%s: logits differ by %g", sp_rotate_name(kind), worst);
        /* and the rotation did something: the embedding is not the original */
        sp_rotation_free(&rot);
        for (int l = 0; l < 2; l++) free_block(&m.blocks[l]);
        free(m.blocks);
        free(m.embed);
        free(m.norm);
        free(head);
        free(ref);
        free(got);
    }
}

/* The bundled model (tied, GQA 8/4, hd 8) through sp_model, as quantize reads it. */
static void test_stories260k_same_function(void **state) {
    (void)state;
    sp_model *md = NULL;
    sp_err err = {0};
    assert_int_equal(sp_model_open(&md, SP_TEST_MODEL_DIR, &err), SP_OK);
    const sp_config *c0 = sp_model_config(md);
    assert_true(c0->tie_embeddings);
    for (int kind = SP_ROTATE_HADAMARD; kind <= SP_ROTATE_ORTHOGONAL; kind++) {
        toy_model m;
        memset(&m, 0, sizeof m);
        m.c = *c0;
        const sp_config *c = &m.c;
        size_t D = (size_t)c->dim, V = (size_t)c->vocab_size;
        m.embed = malloc(V * D * sizeof(float));
        m.head = malloc(V * D * sizeof(float));
        m.norm = malloc(D * sizeof(float));
        m.blocks = calloc((size_t)c->n_layers, sizeof *m.blocks);
        assert_true(m.embed && m.head && m.norm && m.blocks);
        int32_t all[512];
        for (int i = 0; i < 512; i++) all[i] = i;
        assert_int_equal(sp_model_embed(md, all, V, m.embed, &err), SP_OK);
        assert_int_equal(sp_model_read_head_rows(md, 0, (int64_t)V, m.head, &err), SP_OK);
        assert_int_equal(sp_model_read_final_norm(md, m.norm, &err), SP_OK);
        for (int l = 0; l < c->n_layers; l++) {
            assert_int_equal(sp_block_weights_alloc(&m.blocks[l], c, &err), SP_OK);
            assert_int_equal(sp_model_load_block(md, l, &m.blocks[l], &err), SP_OK);
        }
        int T = 64, ids[64];
        uint64_t s = 3;
        for (int t = 0; t < T; t++) ids[t] = (int)(sp_rng_next(&s) % V);
        float *ref = malloc((size_t)T * V * sizeof(float)), *got = malloc((size_t)T * V * sizeof(float));
        assert_true(ref && got);
        toy_logits(&m, ids, T, ref);
        sp_rotation rot;
        assert_int_equal(sp_rotation_init(&rot, kind, 1234, c, &err), SP_OK);
        assert_int_equal(sp_rotation_head(&rot, m.head, V, m.norm, c, &err), SP_OK);
        assert_int_equal(sp_rotation_embed(&rot, m.embed, V, &err), SP_OK);
        for (int l = 0; l < c->n_layers; l++)
            assert_int_equal(sp_rotation_block(&rot, &m.blocks[l], c, &err), SP_OK);
        for (size_t i = 0; i < D; i++) m.norm[i] = 1.0f;
        toy_logits(&m, ids, T, got);
        double scale = max_abs(ref, (size_t)T * V), worst = 0;
        for (size_t i = 0; i < (size_t)T * V; i++)
            worst = fabs(ref[i] - got[i]) > worst ? fabs(ref[i] - got[i]) : worst;
        printf("stories260K, %s: max |Δlogit| = %.3g (max |logit| %.3g)\n", sp_rotate_name(kind),
               worst, scale);
        if (worst > 2e-5 * (scale > 1 ? scale : 1))
            fail_msg("%s: logits differ by %g", sp_rotate_name(kind), worst);
        sp_rotation_free(&rot);
        for (int l = 0; l < c->n_layers; l++) sp_block_weights_free(&m.blocks[l]);
        free(m.blocks);
        free(m.embed);
        free(m.head);
        free(m.norm);
        free(ref);
        free(got);
    }
    sp_model_close(md);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hadamard_bases),
        cmocka_unit_test(test_hadamard_structure),
        cmocka_unit_test(test_orthogonal),
        cmocka_unit_test(test_rows_cols),
        cmocka_unit_test(test_toy_model_same_function),
        cmocka_unit_test(test_stories260k_same_function),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
