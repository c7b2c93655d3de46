/* sp_kl.c — log-softmax summaries, NLL and top-K KL. See sp_kl.h for the formulas.
 *
 * Shape legend: V vocabulary, K kept entries, k = min(K, V) real (non-padding) entries.
 */
#include "kernels/sp_kl.h"

#include <math.h>
#include <stdlib.h>

/* Max logit and s = sum_i exp(l_i - max) in double, index order. Shared by every entry point
 * so that identical rows give bit-identical normalisers. */
static sp_status row_norm(double *mx_out, double *s_out, const float *logits, int V,
                          sp_err *err) {
    float mx = logits[0];
    for (int i = 0; i < V; i++) {
        SP_RETURN_IF(!isfinite(logits[i]), err, SP_ENUMERIC,
                     "sp_kl: logit of token id %d is %g (not finite)", i, (double)logits[i]);
        if (logits[i] > mx) mx = logits[i];
    }
    double m = (double)mx, s = 0.0;
    for (int i = 0; i < V; i++) s += exp((double)logits[i] - m);
    *mx_out = m;
    *s_out = s; /* >= 1: the maximum contributes exp(0) */
    return SP_OK;
}

/* Strict total order of (logit, id): a ranks before b. */
static int ranks_before(float la, int32_t ia, float lb, int32_t ib) {
    return la > lb || (la == lb && ia < ib);
}

/* Restore the heap property below position i of a heap of n entries whose root is the entry
 * that ranks LAST (so the root is the first to be evicted). */
static void sift_down(float *hl, int32_t *hi, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && ranks_before(hl[w], hi[w], hl[l], hi[l])) w = l;
        if (r < n && ranks_before(hl[w], hi[w], hl[r], hi[r])) w = r;
        if (w == i) return;
        float tl = hl[i]; hl[i] = hl[w]; hl[w] = tl;
        int32_t ti = hi[i]; hi[i] = hi[w]; hi[w] = ti;
        i = w;
    }
}

sp_status sp_kl_nll(double *nll, const float *logits, int target, int V, sp_err *err) {
    SP_RETURN_IF(V < 1, err, SP_EINVAL, "sp_kl_nll: vocabulary size %d must be >= 1", V);
    SP_RETURN_IF(target < 0 || target >= V, err, SP_EINVAL,
                 "sp_kl_nll: target id %d outside [0, %d)", target, V);
    double m = 0, s = 1; /* set by row_norm on SP_OK; initialised for -O3 flow analysis */
    SP_FORWARD(row_norm(&m, &s, logits, V, err));
    *nll = (m + log(s)) - (double)logits[target];
    return SP_OK;
}

sp_status sp_kl_row(float *top_lp, int32_t *top_id, float *rest_lp, double *nll,
                    const float *logits, int target, int V, int K, sp_err *err) {
    SP_RETURN_IF(V < 1 || K < 1, err, SP_EINVAL,
                 "sp_kl_row: vocabulary size %d and top-K %d must be >= 1", V, K);
    SP_RETURN_IF(nll && (target < 0 || target >= V), err, SP_EINVAL,
                 "sp_kl_row: target id %d outside [0, %d)", target, V);
    double m = 0, s = 1; /* set by row_norm on SP_OK; initialised for -O3 flow analysis */
    SP_FORWARD(row_norm(&m, &s, logits, V, err));
    double lse = m + log(s);

    /* Top-k selection with a heap held in the outputs: top_lp holds logits until the end. */
    int k = K < V ? K : V;
    for (int i = 0; i < k; i++) {
        top_lp[i] = logits[i];
        top_id[i] = i;
    }
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(top_lp, top_id, k, i);
    for (int i = k; i < V; i++) {
        if (ranks_before(logits[i], i, top_lp[0], top_id[0])) {
            top_lp[0] = logits[i];
            top_id[0] = i;
            sift_down(top_lp, top_id, k, 0);
        }
    }
    /* Heapsort: moving the last-ranked root to the end each time leaves best-first order. */
    for (int n = k - 1; n > 0; n--) {
        float tl = top_lp[0]; top_lp[0] = top_lp[n]; top_lp[n] = tl;
        int32_t ti = top_id[0]; top_id[0] = top_id[n]; top_id[n] = ti;
        sift_down(top_lp, top_id, n, 0);
    }

    /* Remainder summed directly over the ids outside the top-k (no 1 - sum cancellation);
     * i is in the top-k iff it ranks before the last kept entry or is that entry. */
    float thr_l = top_lp[k - 1];
    int32_t thr_i = top_id[k - 1];
    double s_rest = 0.0;
    for (int i = 0; i < V; i++) {
        if (i == thr_i || ranks_before(logits[i], i, thr_l, thr_i)) continue;
        s_rest += exp((double)logits[i] - m);
    }
    *rest_lp = s_rest > 0.0 ? (float)(log(s_rest) - log(s)) : -INFINITY;

    for (int j = 0; j < k; j++) top_lp[j] = (float)((double)top_lp[j] - lse);
    for (int j = k; j < K; j++) {
        top_lp[j] = -INFINITY;
        top_id[j] = -1;
    }
    if (nll) *nll = lse - (double)logits[target];
    return SP_OK;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

sp_status sp_kl_row_vs_ref(double *kl, double *nll, const float *logits, int target,
                           const float *ref_top_lp, const int32_t *ref_top_id, float ref_rest_lp,
                           int V, int K, sp_err *err) {
    SP_RETURN_IF(V < 1 || K < 1, err, SP_EINVAL,
                 "sp_kl_row_vs_ref: vocabulary size %d and top-K %d must be >= 1", V, K);
    SP_RETURN_IF(nll && (target < 0 || target >= V), err, SP_EINVAL,
                 "sp_kl_row_vs_ref: target id %d outside [0, %d)", target, V);
    SP_RETURN_IF(isnan(ref_rest_lp) || ref_rest_lp > 0.0f, err, SP_ENUMERIC,
                 "sp_kl_row_vs_ref: reference rest log-prob %g is not a log-probability",
                 (double)ref_rest_lp);
    /* Validate the reference entries before touching the logits. */
    for (int j = 0; j < K; j++) {
        int32_t id = ref_top_id[j];
        float lp = ref_top_lp[j];
        if (id == -1) {
            SP_RETURN_IF(lp != -INFINITY, err, SP_EINVAL,
                         "sp_kl_row_vs_ref: reference entry %d is padding (id -1) but has "
                         "log-prob %g instead of -inf", j, (double)lp);
            continue;
        }
        SP_RETURN_IF(id < 0 || id >= V, err, SP_EINVAL,
                     "sp_kl_row_vs_ref: reference entry %d has token id %d outside [0, %d)", j,
                     (int)id, V);
        SP_RETURN_IF(isnan(lp) || lp > 0.0f, err, SP_ENUMERIC,
                     "sp_kl_row_vs_ref: reference entry %d (token id %d) has log-prob %g", j,
                     (int)id, (double)lp);
    }

    sp_status st = SP_OK;
    int32_t stack_ids[256];
    int32_t *ids = stack_ids; /* [n_ids] sorted copy of the real reference ids */
    if (K > 256) {
        ids = sp_malloc((size_t)K * sizeof *ids, err, "sp_kl_row_vs_ref: reference id copy");
        if (!ids) return SP_ENOMEM;
    }
    int n_ids = 0;
    for (int j = 0; j < K; j++)
        if (ref_top_id[j] >= 0) ids[n_ids++] = ref_top_id[j];
    qsort(ids, (size_t)n_ids, sizeof *ids, cmp_i32);
    for (int j = 1; j < n_ids; j++) {
        if (ids[j] == ids[j - 1]) {
            st = sp_err_set(err, SP_EINVAL, "sp_kl_row_vs_ref: reference token id %d appears "
                                            "twice in the top-K", (int)ids[j]);
            goto cleanup;
        }
    }

    double m = 0, s = 1; /* set by row_norm on SP_OK; initialised for -O3 flow analysis */
    st = row_norm(&m, &s, logits, V, err);
    if (st != SP_OK) goto cleanup;
    double lse = m + log(s), log_s = log(s);

    if (kl) {
        /* Model mass outside the reference ids, summed directly in index order (the same
         * order and terms as sp_kl_row's remainder when the logits are the same). */
        double s_rest = 0.0;
        int j = 0;
        for (int i = 0; i < V; i++) {
            if (j < n_ids && ids[j] == i) {
                j++;
                continue;
            }
            s_rest += exp((double)logits[i] - m);
        }
        double sum = 0.0;
        for (int e = 0; e < K; e++) {
            int32_t id = ref_top_id[e];
            if (id < 0) continue;
            double lp = (double)ref_top_lp[e];
            double p = exp(lp);
            if (p == 0.0) continue; /* p log p -> 0 */
            double lq = (double)(float)((double)logits[id] - lse); /* rounded like sp_kl_row */
            sum += p * (lp - lq);
        }
        if (ref_rest_lp != -INFINITY) {
            double lr_p = (double)ref_rest_lp, r_p = exp(lr_p);
            if (r_p > 0.0) {
                if (s_rest > 0.0) {
                    double lr_q = (double)(float)(log(s_rest) - log_s);
                    sum += r_p * (lr_p - lr_q);
                } else {
                    sum = INFINITY; /* model puts no representable mass where ref has some */
                }
            }
        }
        *kl = sum;
    }
    if (nll) *nll = lse - (double)logits[target];

cleanup:
    if (ids != stack_ids) free(ids);
    return st;
}
