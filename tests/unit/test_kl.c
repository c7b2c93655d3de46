/* test_kl.c — sp_kl_row / sp_kl_row_vs_ref / sp_kl_nll against brute force in long double.
 *
 * Shape legend: V vocabulary, K kept entries.
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

#include "kernels/sp_kl.h"
#include "common/sp_rng.h"

static float rng_unif(uint64_t *s, float a) {
    return (float)(((double)(sp_rng_next(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0) * a);
}

/* Brute-force probabilities p [V] in long double. */
static void brute_probs(long double *p, const float *l, int V) {
    long double mx = l[0], s = 0.0L;
    for (int i = 0; i < V; i++) if (l[i] > mx) mx = l[i];
    for (int i = 0; i < V; i++) s += (p[i] = expl((long double)l[i] - mx));
    for (int i = 0; i < V; i++) p[i] /= s;
}

/* Brute-force top-K ids by selection: highest prob, lowest id first. Returns k = min(K, V). */
static int brute_topk(int *ids, const float *l, int V, int K) {
    char *used = calloc((size_t)V, 1);
    assert_non_null(used);
    int k = K < V ? K : V;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < V; i++)
            if (!used[i] && (best < 0 || l[i] > l[best])) best = i; /* first max = lowest id */
        used[best] = 1;
        ids[j] = best;
    }
    free(used);
    return k;
}

/* Coarsened KL(p || q) over the ids S = ids[0..k) and "the rest", long double. */
static double brute_coarse_kl(const float *lp, const float *lq, int V, const int *ids, int k) {
    long double *p = malloc((size_t)V * sizeof *p), *q = malloc((size_t)V * sizeof *q);
    assert_true(p && q);
    brute_probs(p, lp, V);
    brute_probs(q, lq, V);
    long double kl = 0.0L, rp = 0.0L, rq = 0.0L;
    char *in = calloc((size_t)V, 1);
    assert_non_null(in);
    for (int j = 0; j < k; j++) {
        in[ids[j]] = 1;
        if (p[ids[j]] > 0) kl += p[ids[j]] * logl(p[ids[j]] / q[ids[j]]);
    }
    for (int i = 0; i < V; i++)
        if (!in[i]) { rp += p[i]; rq += q[i]; }
    if (rp > 0) kl += rp * logl(rp / rq);
    free(p); free(q); free(in);
    return (double)kl;
}

static double brute_full_kl(const float *lp, const float *lq, int V) {
    int *ids = malloc((size_t)V * sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < V; i++) ids[i] = i;
    double kl = brute_coarse_kl(lp, lq, V, ids, V);
    free(ids);
    return kl;
}

static float *rand_logits(uint64_t *s, int V, float a) {
    float *l = malloc((size_t)V * sizeof *l);
    assert_non_null(l);
    for (int i = 0; i < V; i++) l[i] = rng_unif(s, a);
    return l;
}

/* Summary of a random row against brute force: ids, log-probs, remainder, NLL. */
static void test_row_summary(void **st) {
    (void)st;
    uint64_t s = 1;
    int V = 50, K = 8, target = 17;
    float *l = rand_logits(&s, V, 4.0f);
    float lp[8], rest;
    int32_t id[8];
    int bid[8];
    double nll, nll2;
    sp_err err = {0};
    assert_int_equal(sp_kl_row(lp, id, &rest, &nll, l, target, V, K, &err), SP_OK);
    long double p[50];
    brute_probs(p, l, V);
    brute_topk(bid, l, V, K);
    long double top = 0.0L;
    for (int j = 0; j < K; j++) {
        assert_int_equal(id[j], bid[j]);
        assert_true(fabs(lp[j] - (double)logl(p[bid[j]])) <= 1e-6);
        if (j > 0) assert_true(lp[j] <= lp[j - 1]);
        top += p[bid[j]];
    }
    assert_true(fabs(rest - (double)log1pl(-top)) <= 1e-6);
    assert_true(fabs(nll + (double)logl(p[target])) <= 1e-12);
    assert_int_equal(sp_kl_nll(&nll2, l, target, V, &err), SP_OK);
    assert_true(nll2 == nll);
    free(l);
}

/* A row against its own summary: exactly 0 (the contract says within 1e-9). */
static void test_self_kl_zero(void **st) {
    (void)st;
    uint64_t s = 2;
    int Ks[] = {1, 5, 64, 300};
    int V = 1000;
    for (int a = 0; a < 4; a++) {
        int K = Ks[a];
        float *l = rand_logits(&s, V, 8.0f);
        float *lp = malloc((size_t)K * sizeof *lp), rest;
        int32_t *id = malloc((size_t)K * sizeof *id);
        assert_true(lp && id);
        double kl = -1.0, nll_ref, nll;
        assert_int_equal(sp_kl_row(lp, id, &rest, &nll_ref, l, 3, V, K, NULL), SP_OK);
        assert_int_equal(sp_kl_row_vs_ref(&kl, &nll, l, 3, lp, id, rest, V, K, NULL), SP_OK);
        assert_true(fabs(kl) <= 1e-9);
        assert_true(nll == nll_ref);
        free(l); free(lp); free(id);
    }
}

/* Against a different distribution: the coarsened KL, never above the full KL. */
static void test_kl_matches_brute(void **st) {
    (void)st;
    uint64_t s = 3;
    int V = 400;
    int Ks[] = {1, 10, 40, 300}; /* 300 > 256 takes the allocated id copy */
    for (int a = 0; a < 4; a++) {
        int K = Ks[a];
        float *lp_logits = rand_logits(&s, V, 6.0f);
        float *lq_logits = malloc((size_t)V * sizeof(float));
        assert_non_null(lq_logits);
        /* a perturbed model: nearby but not equal, like a quantized one */
        for (int i = 0; i < V; i++) lq_logits[i] = lp_logits[i] + rng_unif(&s, 0.7f);
        float *lp = malloc((size_t)K * sizeof *lp), rest;
        int32_t *id = malloc((size_t)K * sizeof *id);
        int *bid = malloc((size_t)K * sizeof *bid);
        assert_true(lp && id && bid);
        assert_int_equal(sp_kl_row(lp, id, &rest, NULL, lp_logits, -1, V, K, NULL), SP_OK);
        double kl, nll;
        assert_int_equal(sp_kl_row_vs_ref(&kl, &nll, lq_logits, 11, lp, id, rest, V, K, NULL),
                         SP_OK);
        int k = brute_topk(bid, lp_logits, V, K);
        double want = brute_coarse_kl(lp_logits, lq_logits, V, bid, k);
        double full = brute_full_kl(lp_logits, lq_logits, V);
        /* stored log-probs are float: absolute error about 1e-7 */
        assert_true(fabs(kl - want) <= 1e-6 + 1e-5 * want);
        assert_true(kl > 1e-4);          /* the perturbation is visible */
        assert_true(kl <= full + 1e-6);  /* coarsening never adds divergence */
        long double q[400];
        brute_probs(q, lq_logits, V);
        assert_true(fabs(nll + (double)logl(q[11])) <= 1e-12);
        free(lp_logits); free(lq_logits); free(lp); free(id); free(bid);
    }
}

/* K >= V: no remainder, padding, and KL_K is the full KL. */
static void test_k_at_least_v(void **st) {
    (void)st;
    uint64_t s = 4;
    int V = 6, K = 9;
    float *a = rand_logits(&s, V, 3.0f), *b = rand_logits(&s, V, 3.0f);
    float lp[9], rest;
    int32_t id[9];
    assert_int_equal(sp_kl_row(lp, id, &rest, NULL, a, 0, V, K, NULL), SP_OK);
    assert_true(rest == -INFINITY);
    for (int j = V; j < K; j++) {
        assert_int_equal(id[j], -1);
        assert_true(lp[j] == -INFINITY);
    }
    int seen[6] = {0};
    for (int j = 0; j < V; j++) seen[id[j]]++;
    for (int i = 0; i < V; i++) assert_int_equal(seen[i], 1);
    double kl;
    assert_int_equal(sp_kl_row_vs_ref(&kl, NULL, b, -1, lp, id, rest, V, K, NULL), SP_OK);
    double full = brute_full_kl(a, b, V);
    assert_true(full > 0.05);
    assert_true(fabs(kl - full) <= 1e-6);
    assert_int_equal(sp_kl_row_vs_ref(&kl, NULL, a, -1, lp, id, rest, V, K, NULL), SP_OK);
    assert_true(kl == 0.0);
    /* K == V exactly */
    assert_int_equal(sp_kl_row(lp, id, &rest, NULL, a, 0, V, V, NULL), SP_OK);
    assert_true(rest == -INFINITY);
    free(a); free(b);
}

/* Ties: equal logits rank by lower id, also when K cuts through a tie group. */
static void test_ties(void **st) {
    (void)st;
    float l1[6] = {1, 3, 3, 2, 3, 1};
    float lp[4], rest;
    int32_t id[4];
    assert_int_equal(sp_kl_row(lp, id, &rest, NULL, l1, 0, 6, 4, NULL), SP_OK);
    int32_t want1[4] = {1, 2, 4, 3};
    assert_memory_equal(id, want1, sizeof want1);
    assert_true(lp[0] == lp[1] && lp[1] == lp[2] && lp[3] < lp[2]);

    float l2[4] = {5, 5, 5, 5};
    assert_int_equal(sp_kl_row(lp, id, &rest, NULL, l2, 0, 4, 2, NULL), SP_OK);
    assert_int_equal(id[0], 0);
    assert_int_equal(id[1], 1);
    assert_true(fabs(rest - log(0.5)) <= 1e-7);
    assert_true(fabs(lp[0] - log(0.25)) <= 1e-7);

    float l3[10] = {0};
    assert_int_equal(sp_kl_row(lp, id, &rest, NULL, l3, 0, 10, 4, NULL), SP_OK);
    for (int j = 0; j < 4; j++) assert_int_equal(id[j], j);
    /* ties at the tail of a larger row, reversed order of insertion */
    float l4[12] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 0};
    assert_int_equal(sp_kl_row(lp, id, &rest, NULL, l4, 0, 12, 4, NULL), SP_OK);
    int32_t want4[4] = {10, 3, 0, 1};
    assert_memory_equal(id, want4, sizeof want4);
}

/* A remainder far below double epsilon is computed without cancellation; a remainder below
 * the double range is -INFINITY and is then skipped by the KL. */
static void test_tiny_remainder(void **st) {
    (void)st;
    int V = 100;
    float l[100];
    for (int i = 0; i < V; i++) l[i] = -50.0f;
    l[7] = 0.0f;
    float lp[1], rest;
    int32_t id[1];
    assert_int_equal(sp_kl_row(lp, id, &rest, NULL, l, 0, V, 1, NULL), SP_OK);
    assert_int_equal(id[0], 7);
    /* log((V-1) e^-50 / (1 + (V-1) e^-50)) */
    double want = log(99.0) - 50.0 - log1p(99.0 * exp(-50.0));
    assert_true(fabs(rest - want) <= 1e-5 * fabs(want));

    for (int i = 0; i < V; i++) l[i] = -1000.0f;
    l[7] = 0.0f;
    assert_int_equal(sp_kl_row(lp, id, &rest, NULL, l, 0, V, 1, NULL), SP_OK);
    assert_true(rest == -INFINITY);
    assert_true(lp[0] == 0.0f);
    double kl;
    assert_int_equal(sp_kl_row_vs_ref(&kl, NULL, l, 0, lp, id, rest, V, 1, NULL), SP_OK);
    assert_true(kl == 0.0);
    /* a model with mass elsewhere: only the top term counts, log(1/q_7) */
    float m[100];
    for (int i = 0; i < V; i++) m[i] = 0.0f;
    assert_int_equal(sp_kl_row_vs_ref(&kl, NULL, m, 0, lp, id, rest, V, 1, NULL), SP_OK);
    assert_true(fabs(kl - log(100.0)) <= 1e-6);
}

static void test_errors(void **st) {
    (void)st;
    sp_err err = {0};
    float l[4] = {0, 1, NAN, 2};
    float lp[2], rest;
    int32_t id[2];
    double nll, kl;
    assert_int_equal(sp_kl_row(lp, id, &rest, &nll, l, 0, 4, 2, &err), SP_ENUMERIC);
    assert_non_null(strstr(err.msg, "id 2"));
    l[2] = INFINITY;
    assert_int_equal(sp_kl_row(lp, id, &rest, &nll, l, 0, 4, 2, &err), SP_ENUMERIC);
    l[2] = 0.5f;
    assert_int_equal(sp_kl_row(lp, id, &rest, &nll, l, 4, 4, 2, &err), SP_EINVAL);
    assert_int_equal(sp_kl_row(lp, id, &rest, &nll, l, 0, 4, 0, &err), SP_EINVAL);
    assert_int_equal(sp_kl_nll(&nll, l, -1, 4, &err), SP_EINVAL);
    assert_int_equal(sp_kl_row(lp, id, &rest, &nll, l, 0, 4, 2, &err), SP_OK);
    int32_t dup[2] = {id[0], id[0]};
    assert_int_equal(sp_kl_row_vs_ref(&kl, NULL, l, 0, lp, dup, rest, 4, 2, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "twice"));
    int32_t bad[2] = {id[0], 9};
    assert_int_equal(sp_kl_row_vs_ref(&kl, NULL, l, 0, lp, bad, rest, 4, 2, &err), SP_EINVAL);
    float nanlp[2] = {lp[0], NAN};
    assert_int_equal(sp_kl_row_vs_ref(&kl, NULL, l, 0, nanlp, id, rest, 4, 2, &err),
                     SP_ENUMERIC);
    assert_int_equal(sp_kl_row_vs_ref(&kl, NULL, l, 0, lp, id, NAN, 4, 2, &err), SP_ENUMERIC);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_summary),
        cmocka_unit_test(test_self_kl_zero),
        cmocka_unit_test(test_kl_matches_brute),
        cmocka_unit_test(test_k_at_least_v),
        cmocka_unit_test(test_ties),
        cmocka_unit_test(test_tiny_remainder),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
