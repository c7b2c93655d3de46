/* sp_kl.h — per-row log-softmax, top-K summaries, NLL and top-K KL divergence.
 *
 * Shape legend: V vocabulary, K entries kept per row (top-K).
 *
 * A reference row (dense model) is summarised by its top-K log-probabilities and ids plus the
 * log of the mass outside them; a candidate (compressed model) row is then compared against
 * that summary without the reference logits. With
 *   S      = ids of the reference top-K,        p_i, q_i = reference / model probabilities,
 *   r_p    = 1 - sum_{i in S} p_i  (reference mass outside S),
 *   r_q    = 1 - sum_{i in S} q_i  (model mass outside the REFERENCE's ids S),
 * the divergence is
 *   KL_K(ref || model) = sum_{i in S, p_i > 0} p_i (log p_i - log q_i)
 *                        + [r_p > 0] r_p (log r_p - log r_q).
 * This is exactly KL between the two distributions coarsened onto K+1 outcomes (the K ids of S
 * and "everything else"), so by the log-sum inequality 0 <= KL_K <= KL(p || q), and a row
 * compared with its own summary gives 0.
 *
 * Numerics (all deterministic, index order):
 *   - m = max logit, s = sum_i exp(l_i - m) in double, lse = m + log s; log p_i = l_i - lse.
 *   - Log-probabilities are stored as float. sp_kl_row_vs_ref rounds the model's
 *     log q_i = l_i - lse and log r_q to float in exactly the same way, so identical logits give
 *     bit-identical terms and KL exactly 0.0. The sums are in double. Because stored
 *     log-probabilities carry float rounding (relative 6e-8), KL_K of nearly equal rows can come
 *     out negative by about 1e-7 at most; it is not clamped.
 *   - The remainders are summed directly over the ids outside S (never as 1 - sum, which
 *     would cancel): log r = log(sum_{i not in S} exp(l_i - m)) - log s.
 *   - rest_lp = -INFINITY when the remainder is exactly 0: K >= V, or every logit outside S is
 *     more than ~745 below the maximum (the exp underflows in double). KL treats a -INFINITY
 *     reference remainder as r_p = 0 (term skipped). If r_p > 0 but the model's r_q is 0 by
 *     the same underflow, KL is +INFINITY. q_i never enters as 0: log q_i = l_i - lse is used
 *     directly, finite for finite logits.
 *
 * Ordering of the top-K: descending by logit (hence by log-prob), ties broken by the lower id.
 * When K > V, entries V..K-1 are padding: top_lp = -INFINITY, top_id = -1.
 *
 * All functions are pure (no state), thread-safe, and never call exit().
 */
#ifndef SP_KL_H
#define SP_KL_H

#include <stdint.h>

#include "common/sp_error.h"

/* Summarise one reference row.
 * Outputs: top_lp [K] log-probs (float), top_id [K] ids, *rest_lp = log(1 - sum of the top-K
 *          probabilities) (see header comment for -INFINITY), *nll = -log p_target in double
 *          (nll may be NULL; then target is ignored).
 * Inputs:  logits [V], target in [0, V) when nll != NULL.
 * @return SP_OK; SP_EINVAL for V < 1, K < 1 or target out of range; SP_ENUMERIC when a logit is
 *         NaN or infinite (the message gives its id). Outputs are undefined on failure.
 * Cost: O(V log K) time, no allocation. */
sp_status sp_kl_row(float *top_lp, int32_t *top_id, float *rest_lp, double *nll,
                    const float *logits, int target, int V, int K, sp_err *err);

/* Compare one model row with a reference summary made by sp_kl_row (same V and K).
 * Outputs: *kl = KL_K(ref || model) (see header comment), *nll = -log q_target in double (nll
 *          may be NULL; then target is ignored). kl may be NULL too.
 * Inputs:  logits [V] of the model, ref_top_lp [K], ref_top_id [K], ref_rest_lp.
 * @return SP_OK; SP_EINVAL for bad sizes/target, a reference id outside [0, V) that is not
 *         padding (-1 with -INFINITY), or a repeated id; SP_ENUMERIC for a non-finite logit or a
 *         NaN / +INFINITY reference log-prob; SP_ENOMEM when K > 256 and the id copy (4 K bytes)
 *         cannot be allocated.
 * Cost: O(V + K log K). */
sp_status sp_kl_row_vs_ref(double *kl, double *nll, const float *logits, int target,
                           const float *ref_top_lp, const int32_t *ref_top_id, float ref_rest_lp,
                           int V, int K, sp_err *err);

/* NLL only: *nll = -log softmax(logits)[target] = lse - logits[target], in double.
 * @return SP_OK, SP_EINVAL (V < 1 or target out of range), SP_ENUMERIC (non-finite logit). */
sp_status sp_kl_nll(double *nll, const float *logits, int target, int V, sp_err *err);

#endif
