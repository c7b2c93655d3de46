/* test_ef21.c — compressor contracts (contraction, tie rule, bytes, round trip, determinism,
 * corrupt messages) and EF21 invariants (rate with fixed v_i, g = Σ w_i g_i, downlink). */
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mpi/sp_compress.h"
#include "mpi/sp_ef21.h"

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

static double norm2(const float *x, size_t d) {
    double s = 0;
    for (size_t j = 0; j < d; j++) s += (double)x[j] * x[j];
    return s;
}

/* C(x) as a dense vector, and the message length. */
static size_t apply(const sp_cmp_spec *c, const float *x, size_t d, uint64_t stream, float *y) {
    sp_cmp_buf b = {0};
    sp_err err;
    assert_int_equal(sp_cmp_encode(c, x, d, stream, &b, &err), SP_OK);
    memset(y, 0, d * sizeof *y);
    assert_int_equal(sp_cmp_decode_add(b.data, b.len, 1.0f, y, d, &err), SP_OK);
    size_t n = b.len;
    sp_cmp_buf_free(&b);
    return n;
}

static sp_cmp_spec spec(const char *s) {
    sp_cmp_spec c;
    sp_err err;
    assert_int_equal(sp_cmp_parse(s, &c, &err), SP_OK);
    return c;
}

/* ‖C(x) − x‖² <= (1 − α)‖x‖² for every deterministic compressor, on random, spiky, constant
 * (all ties) and sparse vectors, at lengths around the q8 block. */
static void test_contraction(void **st) {
    (void)st;
    const char *specs[] = {"none", "topk:0.01", "topk:0.1", "topk:1", "topk:7", "topk:0.05+q8",
                           "topk:0.05+sign", "q8", "topk:0.02+q8+zstd", "q8+zstd", "topk:1.0"};
    const size_t dims[] = {1, 5, 2047, 2048, 2049, 10000};
    uint64_t s = 3;
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
        size_t d = dims[di];
        float *x = malloc(d * 4), *y = malloc(d * 4), *e = malloc(d * 4);
        for (int kind = 0; kind < 4; kind++) {
            for (size_t j = 0; j < d; j++) {
                float r = frand(&s);
                x[j] = kind == 0 ? r : kind == 1 ? r * r * r * 100.0f : kind == 2 ? 0.25f
                       : (j % 17 == 0 ? r : 0.0f);
            }
            for (size_t si = 0; si < sizeof specs / sizeof *specs; si++) {
                sp_cmp_spec c = spec(specs[si]);
                apply(&c, x, d, 1, y);
                for (size_t j = 0; j < d; j++) e[j] = y[j] - x[j];
                double a = sp_cmp_alpha(&c, d), lhs = norm2(e, d), rhs = (1.0 - a) * norm2(x, d);
                if (lhs > rhs * (1 + 1e-6) + 1e-30)
                    fail_msg("%s d=%zu kind=%d: %g > %g (alpha %g)", specs[si], d, kind, lhs, rhs, a);
            }
        }
        free(x);
        free(y);
        free(e);
    }
}

/* Rand-K: E‖C(x) − x‖² = (1 − K/d)‖x‖² (mean over 400 streams within 5%), exactly K kept, the
 * same stream gives the same bytes, another stream other ones. */
static void test_randk(void **st) {
    (void)st;
    enum { D = 500 };
    float x[D], y[D], e[D];
    uint64_t s = 9;
    for (int j = 0; j < D; j++) x[j] = frand(&s);
    sp_cmp_spec c = spec("randk:0.1@42");
    double mean = 0;
    for (int t = 0; t < 400; t++) {
        apply(&c, x, D, (uint64_t)t, y);
        int kept = 0;
        for (int j = 0; j < D; j++) { e[j] = y[j] - x[j]; kept += y[j] != 0.0f; }
        assert_int_equal(kept, 50);
        mean += norm2(e, D) / 400;
    }
    assert_true(fabs(mean / ((1 - 0.1) * norm2(x, D)) - 1) < 0.05);
    sp_cmp_buf a = {0}, b = {0}, z = {0};
    sp_err err;
    assert_int_equal(sp_cmp_encode(&c, x, D, 7, &a, &err), SP_OK);
    assert_int_equal(sp_cmp_encode(&c, x, D, 7, &b, &err), SP_OK);
    assert_int_equal(sp_cmp_encode(&c, x, D, 8, &z, &err), SP_OK);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    assert_true(z.len != a.len || memcmp(z.data, a.data, a.len) != 0);
    sp_cmp_buf_free(&a);
    sp_cmp_buf_free(&b);
    sp_cmp_buf_free(&z);
}

/* Ties go to the lower index, and the selection is the K largest |x|. */
static void test_topk_ties(void **st) {
    (void)st;
    const float x[] = {1.0f, -1.0f, 0.5f, 1.0f, -2.0f, 1.0f};
    uint64_t idx[6];
    sp_err err;
    assert_int_equal(sp_cmp_topk_indices(x, 6, 3, idx, &err), SP_OK);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    assert_int_equal(idx[2], 4);
    const float z[8] = {0};
    assert_int_equal(sp_cmp_topk_indices(z, 8, 2, idx, &err), SP_OK);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    /* keys that differ only in the low 16 bits */
    float w[4] = {1.0f, nextafterf(1.0f, 2.0f), 1.0f, nextafterf(nextafterf(1.0f, 2.0f), 2.0f)};
    assert_int_equal(sp_cmp_topk_indices(w, 4, 2, idx, &err), SP_OK);
    assert_int_equal(idx[0], 1);
    assert_int_equal(idx[1], 3);
}

/* The three selection paths (K = 1, sort for short vectors, radix select for long ones) agree
 * with a plain definition: the K largest |x|, ties to the lower index. Values repeat a lot
 * (ties) and differ in the low 16 bits only (the radix select's second pass). */
static void test_topk_paths(void **st) {
    (void)st;
    const size_t dims[] = {10, 1000, 70000, 200000};
    uint64_t s = 21;
    for (size_t di = 0; di < 4; di++) {
        size_t d = dims[di];
        float *x = malloc(d * 4);
        for (size_t j = 0; j < d; j++) {
            uint32_t r = (uint32_t)((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 40);
            x[j] = (r % 3 == 0 ? -1.0f : 1.0f) * (1.0f + (float)(r % 97) * 0x1p-20f);
        }
        const size_t Ks[] = {1, 2, 7, 500, d - 1};
        for (size_t ki = 0; ki < 5; ki++) {
            size_t K = Ks[ki] < d ? Ks[ki] : d - 1;
            uint64_t *idx = malloc(K * 8);
            sp_err err;
            assert_int_equal(sp_cmp_topk_indices(x, d, K, idx, &err), SP_OK);
            /* plain check: the K-th key is the threshold; every kept index is >= it, every
             * dropped one <= it, and a dropped tie never precedes a kept tie */
            float thr = INFINITY;
            for (size_t j = 0; j < K; j++) {
                if (j) assert_true(idx[j] > idx[j - 1]);
                thr = fminf(thr, fabsf(x[idx[j]]));
            }
            size_t p = 0, last_tie_kept = 0, first_tie_dropped = d;
            for (size_t j = 0; j < d; j++) {
                int kept = p < K && idx[p] == j;
                if (kept) p++;
                if (kept) assert_true(fabsf(x[j]) >= thr);
                else assert_true(fabsf(x[j]) <= thr);
                if (fabsf(x[j]) == thr && kept) last_tie_kept = j;
                if (fabsf(x[j]) == thr && !kept && first_tie_dropped == d) first_tie_dropped = j;
            }
            assert_true(first_tie_dropped == d || first_tie_dropped > last_tie_kept);
            free(idx);
        }
        free(x);
    }
}

/* Bytes: header + exact payload sizes; dense and top-K f32 round trips are exact; zstd gives
 * the same decoded vector; corrupt or cut messages are refused. */
static void test_bytes_roundtrip(void **st) {
    (void)st;
    enum { D = 4096 };
    float *x = malloc(D * 4), *y = malloc(D * 4), *y2 = malloc(D * 4);
    uint64_t s = 5;
    for (int j = 0; j < D; j++) x[j] = frand(&s);
    sp_cmp_spec c = spec("none");
    assert_int_equal(apply(&c, x, D, 0, y), SP_CMP_HEADER_BYTES + 4 * D);
    assert_memory_equal(x, y, D * 4);
    c = spec("q8");
    assert_int_equal(apply(&c, x, D, 0, y), SP_CMP_HEADER_BYTES + D + 2 * 4);
    c = spec("topk:41");
    size_t n = apply(&c, x, D, 0, y);
    int kept = 0;
    for (int j = 0; j < D; j++) if (y[j] != 0.0f) { kept++; assert_true(y[j] == x[j]); }
    assert_int_equal(kept, 41);
    assert_true(n <= SP_CMP_HEADER_BYTES + 41 * (4 + 2) && n >= SP_CMP_HEADER_BYTES + 41 * 5);
    c = spec("topk:41+sign");
    assert_int_equal(apply(&c, x, D, 0, y) - SP_CMP_HEADER_BYTES, n - SP_CMP_HEADER_BYTES - 41 * 4 + 4 + 6);
    /* zstd on a compressible vector: smaller, same decoded values */
    for (int j = 0; j < D; j++) x[j] = (float)(j % 3);
    c = spec("none");
    size_t plain = apply(&c, x, D, 0, y);
    c = spec("none+zstd");
    size_t z = apply(&c, x, D, 0, y2);
    assert_true(z < plain / 4);
    assert_memory_equal(y, y2, D * 4);
    /* zstd on random bit patterns does not pay: stored raw */
    for (int j = 0; j < D; j++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t u = (uint32_t)(s >> 32) & 0xbfffffffu; /* exponent bit 7 clear: finite */
        memcpy(&x[j], &u, 4);
    }
    assert_int_equal(apply(&c, x, D, 0, y2), SP_CMP_HEADER_BYTES + 4 * D);
    for (int j = 0; j < D; j++) x[j] = frand(&s);
    /* corruption */
    sp_cmp_buf b = {0};
    sp_err err;
    c = spec("topk:0.1+q8");
    assert_int_equal(sp_cmp_encode(&c, x, D, 0, &b, &err), SP_OK);
    sp_cmp_header h;
    size_t L;
    assert_int_equal(sp_cmp_peek(b.data, b.len, &h, &L, &err), SP_OK);
    assert_int_equal(L, b.len);
    assert_int_equal(h.k, 410);
    assert_int_equal(sp_cmp_peek(b.data, b.len - 1, &h, &L, &err), SP_ETRUNC);
    assert_int_equal(sp_cmp_decode_add(b.data, b.len, 1.0f, y, D + 1, &err), SP_EFORMAT);
    b.data[b.len / 2] ^= 0x10;
    assert_int_equal(sp_cmp_decode_add(b.data, b.len, 1.0f, y, D, &err), SP_EFORMAT);
    b.data[b.len / 2] ^= 0x10;
    b.data[9] ^= 1;
    assert_int_equal(sp_cmp_peek(b.data, b.len, &h, &L, &err), SP_EFORMAT);
    sp_cmp_buf_free(&b);
    /* NaN is refused */
    x[7] = NAN;
    assert_int_equal(sp_cmp_encode(&c, x, D, 0, &b, &err), SP_ENUMERIC);
    sp_cmp_buf_free(&b);
    free(x);
    free(y);
    free(y2);
}

static void test_spec_parse(void **st) {
    (void)st;
    const char *ok[] = {"topk:0.01+q8", "randk:0.05", "q8", "topk:1000", "topk:0.01+q8+zstd",
                        "none", "topk:5+sign", "randk:12@7+q8", "+zstd"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        sp_cmp_spec a = spec(ok[i]), b;
        char buf[128];
        sp_err err;
        sp_cmp_format(&a, buf, sizeof buf);
        assert_int_equal(sp_cmp_parse(buf, &b, &err), SP_OK);
        assert_memory_equal(&a, &b, sizeof a);
    }
    assert_int_equal(sp_cmp_k(&(sp_cmp_spec){.kind = SP_CMP_TOPK, .frac = 0.01}, 1001), 11);
    const char *bad[] = {"", "topk", "topk:0", "topk:1.5", "topk:-3", "q4", "q8+sign", "topk:3+q8+sign",
                         "randk:0.1@x", "none+foo"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sp_cmp_spec a;
        sp_err err;
        assert_int_equal(sp_cmp_parse(bad[i], &a, &err), SP_EINVAL);
        assert_non_null(strstr(err.msg, "compressor"));
    }
}

/* With fixed v_i, each g_i approaches v_i/(n w_i) at the contraction rate: ‖g_i^{t+1} − u_i‖² <=
 * (1 − α)‖g_i^t − u_i‖², so g → mean v; and g = Σ w_i g_i holds to float rounding. */
static void test_ef21_rate_invariant(void **st) {
    (void)st;
    enum { N = 4, D = 300, T = 60 };
    const double sizes[N] = {1, 2, 3, 6};
    double w[N];
    sp_err err;
    assert_int_equal(sp_ef21_weights("data", sizes, N, w, &err), SP_OK);
    static float v[N][D], gi[N][D], g[D], scratch[D];
    memset(gi, 0, sizeof gi);
    memset(g, 0, sizeof g);
    uint64_t s = 77;
    double meanv[D] = {0};
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) { v[i][j] = frand(&s); meanv[j] += v[i][j] / N; }
    sp_cmp_spec c = spec("topk:0.05");
    double alpha = sp_cmp_alpha(&c, D), prev[N];
    for (int i = 0; i < N; i++) {
        float sc = (float)(1.0 / (N * w[i]));
        double e = 0;
        for (int j = 0; j < D; j++) e += (double)(sc * v[i][j]) * (sc * v[i][j]);
        prev[i] = e;
    }
    double first_err = 0;
    for (int t = 0; t < T; t++) {
        sp_cmp_buf msg[N];
        const uint8_t *m[N];
        size_t len[N];
        for (int i = 0; i < N; i++) {
            memset(&msg[i], 0, sizeof msg[i]);
            float sc = (float)(1.0 / (N * w[i]));
            assert_int_equal(sp_ef21_uplink(&c, v[i], sc, gi[i], D, 0, scratch, &msg[i], &err), SP_OK);
            double e = 0;
            for (int j = 0; j < D; j++) e += pow((double)(sc * v[i][j]) - gi[i][j], 2);
            assert_true(e <= (1 - alpha) * prev[i] * (1 + 1e-5) + 1e-12);
            prev[i] = e;
            m[i] = msg[i].data;
            len[i] = msg[i].len;
        }
        assert_int_equal(sp_ef21_aggregate(m, len, w, N, g, D, &err), SP_OK);
        for (int i = 0; i < N; i++) sp_cmp_buf_free(&msg[i]);
        double drift = 0, gerr = 0;
        for (int j = 0; j < D; j++) {
            double sum = 0;
            for (int i = 0; i < N; i++) sum += w[i] * gi[i][j];
            drift = fmax(drift, fabs(sum - g[j]));
            gerr += pow(g[j] - meanv[j], 2);
        }
        assert_true(drift < 1e-5);
        if (t == 0) first_err = gerr;
        if (t == T - 1) assert_true(gerr < first_err * 1e-2);
    }
}

/* Downlink: the receivers' x̂ (applying the messages) equals the sender's bit for bit, and
 * ‖x − x̂‖ contracts each round for a fixed x. Classic EF: e carries what was not sent. */
static void test_downlink_and_ef(void **st) {
    (void)st;
    enum { D = 1000 };
    static float x[D], xs[D], xr[D], scratch[D], e[D], sent[D];
    uint64_t s = 1;
    for (int j = 0; j < D; j++) x[j] = frand(&s);
    sp_cmp_spec c = spec("topk:0.1+q8");
    sp_err err;
    double prev = norm2(x, D);
    for (int t = 0; t < 20; t++) {
        sp_cmp_buf m = {0};
        assert_int_equal(sp_ef21_downlink(&c, x, xs, D, (uint64_t)t, scratch, &m, &err), SP_OK);
        assert_int_equal(sp_cmp_decode_add(m.data, m.len, 1.0f, xr, D, &err), SP_OK);
        assert_memory_equal(xs, xr, sizeof xs);
        double d2 = 0;
        for (int j = 0; j < D; j++) d2 += pow((double)x[j] - xs[j], 2);
        assert_true(d2 <= (1 - sp_cmp_alpha(&c, D)) * prev * (1 + 1e-5));
        prev = d2;
        sp_cmp_buf_free(&m);
    }
    /* classic EF: after each step, sent + e == Σ v (up to rounding) */
    memset(e, 0, sizeof e);
    memset(sent, 0, sizeof sent);
    for (int t = 0; t < 5; t++) {
        sp_cmp_buf m = {0};
        assert_int_equal(sp_ef_uplink(&c, x, 1.0f, e, D, 0, &m, &err), SP_OK);
        assert_int_equal(sp_cmp_decode_add(m.data, m.len, 1.0f, sent, D, &err), SP_OK);
        sp_cmp_buf_free(&m);
    }
    for (int j = 0; j < D; j++) assert_true(fabs(sent[j] + e[j] - 5.0 * x[j]) < 1e-4);
}

/* The gather on one rank returns the message itself. */
/* sp_ef21_step against the theorem's form, written out: γ = 1/(L + L̃·√(β/θ)) with L = L̃ = 1,
 * θ = 1 − √(1 − α), β = (1 − α)/θ (issue 21); and the ends: α = 1 (no compression) steps 1,
 * α <= 0 or NaN steps 0. */
static void test_step(void **st) {
    (void)st;
    const double alphas[] = {1e-6, 0.001, 0.01, 0.05, 0.0968, 0.28, 0.5, 0.9, 0.999999};
    for (size_t i = 0; i < sizeof alphas / sizeof alphas[0]; i++) {
        double a = alphas[i], theta = 1.0 - sqrt(1.0 - a), beta = (1.0 - a) / theta;
        double want = 1.0 / (1.0 + 1.0 * sqrt(beta / theta));
        assert_true(fabs(sp_ef21_step(a) - want) <= 1e-12 * want);
    }
    /* topk:0.05 worst case: 0.02532 (the experiment; the fixed 1.0 diverges from it) */
    assert_true(fabs(sp_ef21_step(0.05) - 0.025320565519103) < 1e-12);
    assert_true(sp_ef21_step(1.0) == 1.0 && sp_ef21_step(1.5) == 1.0);
    assert_true(sp_ef21_step(0.0) == 0.0 && sp_ef21_step(-1.0) == 0.0 && sp_ef21_step(NAN) == 0.0);
}

static void test_gather_one_rank(void **st) {
    (void)st;
    const uint8_t msg[5] = {1, 2, 3, 4, 5};
    sp_ef21_gathered g;
    sp_err err;
    assert_int_equal(sp_ef21_gather(MPI_COMM_SELF, -1, msg, 5, &g, &err), SP_OK);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.len[0], 5);
    assert_memory_equal(g.data, msg, 5);
    sp_ef21_gathered_free(&g);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contraction),       cmocka_unit_test(test_randk),
        cmocka_unit_test(test_topk_ties),         cmocka_unit_test(test_topk_paths),
        cmocka_unit_test(test_bytes_roundtrip),
        cmocka_unit_test(test_spec_parse),        cmocka_unit_test(test_ef21_rate_invariant),
        cmocka_unit_test(test_downlink_and_ef),   cmocka_unit_test(test_gather_one_rank),
        cmocka_unit_test(test_step),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return r;
}
