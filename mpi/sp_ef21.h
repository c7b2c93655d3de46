/* sp_ef21.h — error-feedback compressed exchange: EF21 / EF21-W uplink, EF21-BC-style downlink,
 * classic error feedback (for comparison), and the deterministic exchange of packed messages.
 *
 * The method (Richtárik, Sokolov, Fatkhullin 2021; EF21-W: "Error Feedback Reloaded" 2024):
 *   participant i keeps g_i, the aggregate keeps g = Σ_i w_i g_i. Each round i has a new v_i and
 *   sends only c_i = C(v_i/(n·w_i) − g_i); it sets g_i += c_i and the aggregate g += Σ w_i c_i,
 *   so g tracks (1/n) Σ v_i. EF21: w_i = 1/n. EF21-W: w_i = L_i/Σ L_j (or data sizes).
 *   Downlink: receivers hold x̂; the sender sends C(x − x̂) and both add it to x̂.
 *   Classic EF (Seide 2014, Stich 2018): e_i += v_i; c_i = C(e_i); e_i −= c_i.
 *
 * What is applied is always the DECODED message (quantization included), on both sides, so
 * sender and receivers hold the same bits. g = Σ w_i g_i holds up to float rounding of the
 * additions (one rounding per coordinate per round on each side; tests bound the drift).
 *
 * Shapes: every vector has length d (one compression unit; callers cut tensors into units).
 * All functions are reentrant; "collective" ones must be called by every rank of comm.
 */
#ifndef SP_EF21_H
#define SP_EF21_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"
#include "mpi/sp_compress.h"

/* Uplink step of participant i: u = scale·v − g_i (scale = 1/(n·w_i)), msg += encode(C(u)),
 * g_i += decode(msg). scratch [d] floats. The message is APPENDED to msg.
 * @return SP_OK; the errors of sp_cmp_encode (g_i unchanged then). */
sp_status sp_ef21_uplink(const sp_cmp_spec *c, const float *v, float scale, float *g_i, size_t d,
                         uint64_t stream, float *scratch, sp_cmp_buf *msg, sp_err *err);

/* Classic error feedback: e += scale·v; msg += encode(C(e)); e −= decode(msg). */
sp_status sp_ef_uplink(const sp_cmp_spec *c, const float *v, float scale, float *e, size_t d,
                       uint64_t stream, sp_cmp_buf *msg, sp_err *err);

/* Downlink step of the sender: msg += encode(C(x − x̂)); x̂ += decode(msg). scratch [d].
 * Receivers apply the same message with sp_cmp_decode_add(msg, 1, x̂). */
sp_status sp_ef21_downlink(const sp_cmp_spec *c, const float *x, float *xhat, size_t d,
                           uint64_t stream, float *scratch, sp_cmp_buf *msg, sp_err *err);

/* Aggregate: g += Σ_i w_i·decode(msg_i), i = 0..n−1 in that order (so the bits depend only on
 * the messages, not on how they arrived). msgs[i] has lens[i] bytes.
 * @return SP_OK; a decode error prefixed "participant i" (g may then be partly updated: callers
 *         validate every message with sp_cmp_peek first, or discard g). */
sp_status sp_ef21_aggregate(const uint8_t *const *msgs, const size_t *lens, const double *w, int n,
                            float *g, size_t d, sp_err *err);

/* EF21's step (Richtárik et al. 2021, Thm 1) γ = 1/(L + L̃·√(β/θ)), θ = 1 − √(1 − α),
 * β = (1 − α)/θ, for the model-delta objective f(x) = Σ_i w_i·½‖x − local_i‖² (the "gradient"
 * of site i is −v_i, so L = L̃ = 1). Then √(β/θ) = √(1 − α)/θ and γ = θ/(θ + √(1 − α)) = θ:
 *   γ = 1 − √(1 − α).
 * α is clamped to [0, 1] (α = 1, no compression: γ = 1, one round reaches the mean). */
double sp_ef21_step(double alpha);

/* Weights for n participants. mode "uniform": 1/n; "data": sizes[i]/Σ sizes; "smooth": L_i/Σ L
 * (sizes = L). @return SP_EINVAL for an unknown mode or non-positive sizes. */
sp_status sp_ef21_weights(const char *mode, const double *sizes, int n, double *w, sp_err *err);

/* Messages gathered from every rank: rank r's bytes are data[off[r] .. off[r]+len[r]). */
typedef struct {
    uint8_t *data;
    size_t *off, *len;
    int n;
    size_t total;
} sp_ef21_gathered;
void sp_ef21_gathered_free(sp_ef21_gathered *g);

/* Collective. Rank r contributes mine[len]; root >= 0: MPI_Gatherv to root (others get n = 0);
 * root < 0: MPI_Allgatherv (every rank gets all). Lengths travel first (one MPI_Allgather of
 * u64), so messages of any size up to INT_MAX bytes in total are exchanged. The result is in
 * rank order, so sp_ef21_aggregate over it is deterministic for any timing.
 * @return SP_OK on every rank, or the same error on every rank (sp_mpi_agree). */
sp_status sp_ef21_gather(MPI_Comm comm, int root, const uint8_t *mine, size_t len,
                         sp_ef21_gathered *all, sp_err *err);

#endif
