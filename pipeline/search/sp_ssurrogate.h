/* sp_ssurrogate.h — the additive surrogate of `search --screen F`: a model of a genome's KL
 *     KL(g) ≈ a_draw + Σ_m w[m, g_m],   w = c·t + δ
 * over (module, level), t the ΔKL sensitivity table (sp_seval_sensitivity). Each generation
 * scores F × offspring children with it and evaluates only the best `offspring` (AMQ-style
 * screening); after every stage the model is refitted on everything measured so far.
 *
 * Fit: fitnesses are only comparable inside one draw of windows (a stage of a generation), so
 * each draw gets its own intercept a_draw, eliminated by centring features and KL inside the
 * draw (fixed effects). With φ(g) = (Σ_m t[m, g_m], one-hot (m, g_m)) centred per draw,
 *     minimise Σ_i (ỹ_i − φ̃_iᵀθ)² + β (c − 1)² + α ‖δ‖²,   θ = (c, δ)
 * so with no data w = t, and δ moves a (module, level) only as far as the data insist. The
 * normal equations (P + 1 unknowns, P = modules × levels) are accumulated as draws arrive and
 * solved by a plain Cholesky in double, in a fixed order, on every rank: the same bits on any
 * rank count and, replayed from the checkpointed draws, across a resume.
 * α = 4 and β = 4 (n·mean t)²: the prior weighs as much as a few observations.
 * Pure: no I/O, no MPI, no globals. */
#ifndef SP_SSURROGATE_H
#define SP_SSURROGATE_H

#include <stdint.h>

#include "common/sp_error.h"
#include "pipeline/search/sp_sgenome.h"

typedef struct {
    int n, NL, P;          /* modules, levels, P = n·NL                                   */
    const double *t;       /* [P] the table (not owned)                                  */
    double *A, *r;         /* [(P+1)²], [P+1] normal equations (centred, summed)         */
    double *theta;         /* [P+1] (c, δ) after the last fit                            */
    double *w;             /* [P] c·t + δ                                                */
    double *L;             /* [(P+1)²] Cholesky scratch                                  */
    int draws;
} sp_ssurrogate;

sp_status sp_ssurrogate_init(sp_ssurrogate *s, const sp_sgenome_space *sp, const double *table,
                             sp_err *err);
void sp_ssurrogate_free(sp_ssurrogate *s);
/* Σ_m w[m, g_m]: the prediction up to the draw's intercept. */
double sp_ssurrogate_predict(const sp_ssurrogate *s, const uint8_t *g);
/* Add one draw: n genomes and their measured KL on the same windows (n >= 2 to carry
 * information; n < 2 is ignored). */
void sp_ssurrogate_add(sp_ssurrogate *s, const uint8_t *const *g, const double *y, int n);
/* Refit w from everything added. @return SP_ENUMERIC if the system is not positive definite. */
sp_status sp_ssurrogate_fit(sp_ssurrogate *s, sp_err *err);

/* Spearman rank correlation of a and b (n values; average ranks for ties); 0 when n < 3. */
double sp_ssurrogate_spearman(const double *a, const double *b, int n);

#endif
