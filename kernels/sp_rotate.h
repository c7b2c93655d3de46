/* sp_rotate.h — offline rotations fused into the weights (issue 23; QuaRot/SpinQuant R1 + R2,
 * QuIP#'s incoherence processing), so that the rotated model is an ordinary Llama.
 *
 * The math (row-vector convention: a hidden state is a row x [D]; a linear is y = x Wᵀ, W
 * [out, in]; Q is D×D orthogonal, Q Qᵀ = I):
 *   fold     RMSNorm(x)·g feeding W equals RMSNorm(x) feeding W·diag(g): g is folded into the
 *            columns of q/k/v (input_layernorm), gate/up (post_attention_layernorm) and the
 *            head (final norm), and the norms become all-ones.
 *   R1       the residual stream becomes x' = x·Q. A weightless RMSNorm commutes with Q
 *            (‖xQ‖ = ‖x‖), so with the norms folded:
 *              embed ← embed·Q;  q/k/v/gate/up/head: W ← W·Q  (xn' Wᵀ' = xn Q Qᵀ Wᵀ);
 *              o/down: W ← Qᵀ·W  (their outputs are added to x', so they are rotated too).
 *            Biases of q/k/v are outputs of W·Q-rotated layers: unchanged.
 *   R2       per KV head h (SpinQuant's R2, hd×hd orthogonal R): v_h ← Rᵀ v_h, i.e. the rows of
 *            v_proj's head h ← Rᵀ·W_h and its bias ← Rᵀ b_h; attention mixes v rows with
 *            scalar weights, so each query head's output is rotated the same way, and o_proj's
 *            columns of every query head h' (whose KV head is h'/G) ← W[:, h']·R undo it.
 *            q/k are not rotated (RoPE does not commute with R).
 *   The function of the model is unchanged up to rounding; the weights seen by GPTQ are
 *   "incoherent": a few large input channels are spread over all of them.
 *
 * Rotations (sp_rotate, one n×n orthogonal Q):
 *   hadamard    Q = diag(s)·(H_m ⊗ H_{2^k})/√n, n = 2^k·m, s ∈ {±1}ⁿ from the seed, H_{2^k}
 *               Sylvester (a fast Walsh–Hadamard transform), H_m a Hadamard matrix of order m
 *               built here by Paley's constructions (I: prime p ≡ 3 mod 4, m = p + 1; II: prime
 *               p ≡ 1 mod 4, m = 2(p + 1)), e.g. 12, 20, 28. The smallest m that works is
 *               chosen; n with no construction (odd n > 1, or no prime fits) is refused.
 *               Cost x·Q: n(log₂(n/m) + m) additions per row, memory n + m² values.
 *   orthogonal  Q from the Householder QR of an n×n standard Gaussian matrix (seeded,
 *               LAPACKE dgeqrf + dorgqr, column signs fixed by sign(R_ii) so Q is Haar
 *               distributed). Cost: (4/3)n³ flops once, n² doubles, and 2n² flops per row.
 * Every product is done in double and rounded once to float. Results depend only on
 * (kind, n, seed): the same bits on every rank and for any thread count (sp_blas tiles; the
 * QR runs in single-threaded LAPACK).
 */
#ifndef SP_ROTATE_H
#define SP_ROTATE_H

#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"
#include "shards/sp_config.h"
#include "shards/sp_model.h"

enum { SP_ROTATE_NONE = 0, SP_ROTATE_HADAMARD, SP_ROTATE_ORTHOGONAL, SP_ROTATE_COUNT };

/* "none" | "hadamard" | "orthogonal" → SP_ROTATE_*, or -1. */
int sp_rotate_parse(const char *s);
/* SP_ROTATE_* → its name ("?" when out of range). */
const char *sp_rotate_name(int kind);

typedef struct sp_rotate sp_rotate;

/* Build Q of order n (kind hadamard or orthogonal). SP_EUNSUPPORTED (one line naming n) when
 * hadamard has no construction for n; SP_ENOMEM. */
sp_status sp_rotate_create(sp_rotate **out, int kind, int n, uint64_t seed, sp_err *err);
void sp_rotate_free(sp_rotate *r);
int sp_rotate_order(const sp_rotate *r);
/* hadamard: the m of n = 2^k·m (1 for a power of two); orthogonal: 0. */
int sp_rotate_hadamard_m(const sp_rotate *r);

/* x ← x·Q for `rows` rows of n values, row stride ld (>= n). SP_ENOMEM. */
sp_status sp_rotate_rows(const sp_rotate *r, float *x, size_t rows, size_t ld, sp_err *err);
/* W ← Qᵀ·W for W [n, cols] row-major (row stride ld >= cols). SP_ENOMEM. */
sp_status sp_rotate_cols(const sp_rotate *r, float *W, size_t cols, size_t ld, sp_err *err);

/* A Hadamard matrix of order m (entries ±1, H Hᵀ = m I) from the constructions above, or
 * SP_EUNSUPPORTED. h: m·m ints, row-major. For tests and for sp_rotate_create. */
sp_status sp_rotate_hadamard_base(int m, int *h, sp_err *err);

/* ---- a whole model --------------------------------------------------------------------- */

/* The rotation of a model: R1 of order dim, R2 of order head_dim (seeded from seed and seed
 * with a fixed offset), norms folded. */
typedef struct {
    int kind;            /* SP_ROTATE_*; SP_ROTATE_NONE: every call below is a no-op        */
    uint64_t seed;
    sp_rotate *r1, *r2;
} sp_rotation;

sp_status sp_rotation_init(sp_rotation *rot, int kind, uint64_t seed, const sp_config *c,
                           sp_err *err);
void sp_rotation_free(sp_rotation *rot);

/* A decoder block in place: fold both norms (then all-ones), R1 on every linear, R2 on v/o
 * (and v's bias). */
sp_status sp_rotation_block(const sp_rotation *rot, sp_block_weights *w, const sp_config *c,
                            sp_err *err);
/* Hidden states or embedding rows [rows, D] in place: x ← x·Q. */
sp_status sp_rotation_embed(const sp_rotation *rot, float *x, size_t rows, sp_err *err);
/* Head rows [nv, D] in place: W ← (W·diag(final_norm))·Q; the final norm then is all-ones. */
sp_status sp_rotation_head(const sp_rotation *rot, float *head_rows, size_t nv,
                           const float *final_norm, const sp_config *c, sp_err *err);
/* v_proj's bias [Hkv·hd] in place: b_h ← Rᵀ b_h per KV head. */
sp_status sp_rotation_v_bias(const sp_rotation *rot, float *bv, const sp_config *c, sp_err *err);

#endif
