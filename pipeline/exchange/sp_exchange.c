/* sp_exchange.c — one round of `shardpress exchange` (see sp_exchange.h for the method, the
 * state and the order of writes). Shapes: P values per model, units of len <= SP_EXCHANGE_UNIT
 * values at global offset goff; n sites, S = this job's ranks (site0 .. site0+S−1). */
#include "pipeline/exchange/sp_exchange.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/sp_stop.h"
#include "mpi/sp_ef21.h"
#include "mpi/sp_mpi.h"
#include "pipeline/exchange/sp_xint.h"

void sp_exchange_defaults(sp_exchange_opts *o) {
    memset(o, 0, sizeof *o);
    o->compressor = "topk:0.01+q8";
    o->weights = "uniform";
    o->lr = 1.0;
    o->lr_auto = 1;
    o->timeout_s = 60.0;
}

typedef struct {
    MPI_Comm comm;
    int rank, size;
    const sp_exchange_opts *o;
    sp_cmp_spec up, down, dense;
    int has_down, n, site0, mysite, server_job, is_server, files;
    int weighted; /* --weights data: the target is Σ w_i v_i, not the mean */
    char up_name[128], down_name[128];
    sp_xmodel base, local;
    int64_t P, round;
    uint32_t layout, base_crc;
    size_t stats_at;     /* up_msg: where the residual-norms message starts                  */
    float *g_i, *g, *x;  /* [P]; g, x on the server's rank 0 only */
    double *w;           /* [n] */
    float *vb, *vl, *scratch; /* [UNIT] */
    double *sumv;        /* [UNIT], diagnostics */
    float (*stats)[2];   /* [n]: each site's {‖r‖², ‖r − C(r)‖²} of the current unit (server) */
    uint16_t *conv;      /* [UNIT] */
    sp_cmp_buf up_msg, down_msg;
    sp_xout out;
    int out_open;
    double num, den;
    double step_sum, step_w, step_min, step_max; /* the server's steps, weighted by unit length */
    sp_exchange_result *r;
} xrun;

static uint64_t stream_id(int64_t round, uint64_t unit, int site) {
    return sp_cmp_mix64(sp_cmp_mix64((uint64_t)round) ^ (unit << 16) ^ (uint64_t)site);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The pattern with {rank} / {site} replaced by the site id. */
static void local_dir(const char *pat, int site, char *out, size_t cap) {
    size_t n = 0;
    for (const char *p = pat; *p && n + 1 < cap;) {
        if (!strncmp(p, "{rank}", 6) || !strncmp(p, "{site}", 6)) {
            n += (size_t)snprintf(out + n, cap - n, "%d", site);
            p += 6;
        } else {
            out[n++] = *p++;
        }
    }
    out[n < cap ? n : cap - 1] = '\0';
}

/* ---- setup ----------------------------------------------------------------------------------- */

/* --server-lr as the state records it: "auto" or the number. */
static void lr_text(const sp_exchange_opts *o, char *buf, size_t cap) {
    if (o->lr_auto) snprintf(buf, cap, "auto");
    else snprintf(buf, cap, "%.17g", o->lr);
}

static sp_status parse_weights(xrun *x, sp_err *err) {
    const char *ws = x->o->weights;
    if (!strcmp(ws, "uniform") || !strcmp(ws, "smooth"))
        return sp_ef21_weights("uniform", NULL, x->n, x->w, err);
    SP_RETURN_IF(strncmp(ws, "data:", 5) != 0, err, SP_EINVAL,
                 "--weights '%s': expected uniform, data:N1,N2,... or smooth", ws);
    double *sz = sp_malloc((size_t)x->n * sizeof *sz, err, "site sizes");
    if (!sz) return SP_ENOMEM;
    const char *p = ws + 5;
    int k = 0;
    while (*p && k < x->n) {
        char *end = NULL;
        sz[k++] = strtod(p, &end);
        if (end == p) break;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') break;
    }
    sp_status st = k == x->n && !*p ? sp_ef21_weights("data", sz, x->n, x->w, err)
                   : sp_err_set(err, SP_EINVAL, "--weights '%s': expected %d sizes (one per site), "
                                "comma-separated", ws, x->n);
    free(sz);
    return st;
}

/* Phase 1 (local work, then agree): options, both models, shapes and dtypes, fingerprints. */
static sp_status setup(xrun *x, sp_err *err) {
    const sp_exchange_opts *o = x->o;
    SP_RETURN_IF(!o->base || !o->local || !o->state || !o->out, err, SP_EINVAL,
                 "exchange: --base, --local, --state and --out are required");
    SP_RETURN_IF(!o->lr_auto && (!(o->lr > 0.0) || !isfinite(o->lr)), err, SP_EINVAL,
                 "--server-lr %g: must be > 0", o->lr);
    SP_FORWARD(sp_cmp_parse(o->compressor, &x->up, err));
    x->has_down = o->downlink && strcmp(o->downlink, "none") != 0;
    if (x->has_down) SP_FORWARD(sp_cmp_parse(o->downlink, &x->down, err));
    sp_cmp_format(&x->up, x->up_name, sizeof x->up_name);
    if (x->has_down) sp_cmp_format(&x->down, x->down_name, sizeof x->down_name);
    else snprintf(x->down_name, sizeof x->down_name, "none");
    SP_FORWARD(sp_cmp_parse("none", &x->dense, err));
    x->files = o->files_dir != NULL;
    x->n = o->sites ? o->sites : x->size;
    x->site0 = x->files ? o->site0 : 0;
    SP_RETURN_IF(x->n > SP_EXCHANGE_MAX_SITES, err, SP_EINVAL, "--sites %d: at most %d", x->n,
                 SP_EXCHANGE_MAX_SITES);
    SP_RETURN_IF(!x->files && x->n != x->size, err, SP_EINVAL, "--sites %d: with --transport mpi "
                 "every site is a rank (%d ranks)", x->n, x->size);
    SP_RETURN_IF(x->site0 < 0 || x->site0 + x->size > x->n, err, SP_EINVAL,
                 "--site %d: this job's %d ranks do not fit in sites 0..%d", x->site0, x->size, x->n - 1);
    SP_RETURN_IF(x->files && !strcmp(o->weights, "smooth"), err, SP_EUNSUPPORTED,
                 "--weights smooth needs --transport mpi (the sites' norms are exchanged first)");
    x->mysite = x->site0 + x->rank;
    x->server_job = x->site0 == 0;
    x->is_server = x->server_job && x->rank == 0;
    x->w = sp_malloc(SP_EXCHANGE_MAX_SITES * sizeof *x->w, err, "weights"); /* a state's w fits */
    if (!x->w) return SP_ENOMEM;
    SP_FORWARD(parse_weights(x, err));
    x->weighted = !strncmp(o->weights, "data:", 5);
    /* Issue 21: without {rank} every rank of this job would read the same directory as its
     * own site's model (two "sites" from one model). Separate jobs (--transport files) of one
     * rank each may name their site's directory plainly. */
    SP_RETURN_IF(x->size > 1 && !strstr(o->local, "{rank}") && !strstr(o->local, "{site}"), err,
                 SP_EINVAL, "--local '%s': the %d ranks of this job would share this directory "
                 "as their sites' models; name each site's with {rank} (e.g. 'sites/{rank}')",
                 o->local, x->size);
    char ldir[4096];
    local_dir(o->local, x->mysite, ldir, sizeof ldir);
    SP_FORWARD(sp_xmodel_open(&x->base, o->base, err));
    SP_FORWARD(sp_xmodel_open(&x->local, ldir, err));
    SP_FORWARD(sp_xmodel_check_like(&x->local, &x->base, err));
    char rb[PATH_MAX], ro[PATH_MAX];
    SP_RETURN_IF(realpath(o->base, rb) && realpath(o->out, ro) && !strcmp(rb, ro), err, SP_EINVAL,
                 "--out %s: is the base model's directory", o->out);
    x->P = x->base.P;
    x->layout = sp_xmodel_layout_fp(&x->base);
    x->base_crc = x->rank == 0 ? sp_xmodel_data_crc(&x->base) : 0;
    size_t U = SP_EXCHANGE_UNIT;
    x->vb = sp_malloc(U * sizeof(float), err, "unit buffer");
    x->vl = sp_malloc(U * sizeof(float), err, "unit buffer");
    x->scratch = sp_malloc(U * sizeof(float), err, "unit buffer");
    x->conv = sp_malloc(U * sizeof(uint16_t), err, "unit buffer");
    x->sumv = sp_malloc(U * sizeof(double), err, "unit buffer");
    x->stats = sp_malloc((size_t)x->n * sizeof *x->stats, err, "residual norms");
    if (!x->stats) return SP_ENOMEM;
    x->g_i = sp_calloc((size_t)x->P ? (size_t)x->P : 1, sizeof(float), err, "g_i");
    if (!x->vb || !x->vl || !x->scratch || !x->conv || !x->sumv || !x->g_i) return SP_ENOMEM;
    if (x->is_server) {
        x->g = sp_calloc((size_t)x->P ? (size_t)x->P : 1, sizeof(float), err, "g");
        if (!x->g) return SP_ENOMEM;
        if (x->has_down) {
            x->x = sp_malloc((size_t)x->P ? (size_t)x->P * sizeof(float) : 1, err, "server model x");
            if (!x->x) return SP_ENOMEM;
        }
    }
    return SP_OK;
}

/* Phase 2: the state (collective). A fresh state starts at g_i = g = 0, x = base. */
static sp_status load_state(xrun *x, sp_err *err) {
    sp_ckpt_opts co;
    sp_ckpt_opts_default(&co);
    sp_ckpt *ck = NULL;
    SP_FORWARD(sp_ckpt_create(&ck, x->comm, x->o->state, &co, err));
    sp_xstate_meta m;
    memset(&m, 0, sizeof m);
    int found = 0;
    char warn[2048] = "";
    sp_status st = sp_xstate_load(ck, x->rank, x->P, x->layout, x->size, &m, &found, x->g_i, x->g, x->x,
                                  x->is_server ? x->w : NULL, warn, sizeof warn, err);
    sp_status d = sp_ckpt_destroy(ck, err);
    if (st == SP_OK) st = d;
    if (st == SP_OK && warn[0] && x->rank == 0) fprintf(stderr, "shardpress: warning: %s\n", warn);
    x->round = 0;
    if (st == SP_OK && found) {
        char lr[32];
        lr_text(x->o, lr, sizeof lr);
        const char *S = x->o->state;
        if (m.layout != x->layout)
            st = sp_err_set(err, SP_EFORMAT, "%s: state of another model (its tensors, shapes or "
                            "dtypes differ from --base %s)", S, x->o->base);
        else if (strcmp(m.compressor, x->up_name) != 0)
            st = sp_err_set(err, SP_EINVAL, "%s: state made with --compressor %s, not %s", S,
                            m.compressor, x->up_name);
        else if (strcmp(m.downlink, x->down_name) != 0)
            st = sp_err_set(err, SP_EINVAL, "%s: state made with --downlink %s, not %s", S,
                            m.downlink, x->down_name);
        else if (strcmp(m.weights, x->o->weights) != 0 || strcmp(m.lr, lr) != 0)
            st = sp_err_set(err, SP_EINVAL, "%s: state made with --weights %s --server-lr %s, not "
                            "%s %s", S, m.weights, m.lr, x->o->weights, lr);
        else if (m.sites != x->n || m.site0 != x->site0 || m.jobsites != x->size)
            st = sp_err_set(err, SP_EINVAL, "%s: state of sites %d..%d of %d, this job runs sites "
                            "%d..%d of %d", S, m.site0, m.site0 + m.jobsites - 1, m.sites, x->site0,
                            x->site0 + x->size - 1, x->n);
        else if (x->rank == 0 && m.next_base != x->base_crc)
            st = sp_err_set(err, SP_EINVAL, "--base %s: not the model that round %lld wrote (CRC-32 "
                            "0x%08x, expected 0x%08x): give that round's --out as --base (a round "
                            "already in the state is not run twice)", x->o->base,
                            (long long)m.round, x->base_crc, m.next_base);
        x->round = m.round;
    }
    st = sp_mpi_agree(x->comm, st, err);
    /* The weights live in the server's state (smooth ones are measured once); share them. */
    if (st == SP_OK && found)
        st = sp_mpi_agree(x->comm, sp_mpi_check(MPI_Bcast(x->w, x->n, MPI_DOUBLE, 0, x->comm),
                                                "MPI_Bcast(weights)", err), err);
    if (st == SP_OK && !found && x->x)
        for (size_t i = 0; i < x->base.n; i++)
            sp_xmodel_read(&x->base, i, 0, (size_t)(x->base.off[i + 1] - x->base.off[i]),
                           x->x + x->base.off[i]);
    return st;
}

/* Smooth weights (first round, MPI): L_i ∝ ‖v_i‖, one pass over the models. */
static sp_status smooth_weights(xrun *x, sp_err *err) {
    double s = 0.0;
    for (size_t i = 0; i < x->base.n; i++) {
        int64_t L = x->base.off[i + 1] - x->base.off[i];
        for (int64_t o = 0; o < L; o += (int64_t)SP_EXCHANGE_UNIT) {
            size_t len = (size_t)(L - o < (int64_t)SP_EXCHANGE_UNIT ? L - o : (int64_t)SP_EXCHANGE_UNIT);
            sp_xmodel_read(&x->base, i, o, len, x->vb);
            sp_xmodel_read(&x->local, i, o, len, x->vl);
            for (size_t j = 0; j < len; j++) s += ((double)x->vl[j] - x->vb[j]) * ((double)x->vl[j] - x->vb[j]);
        }
    }
    double *norms = x->sumv; /* UNIT >= n doubles */
    double me = sqrt(s) + 1e-30;
    sp_status st = sp_mpi_check(MPI_Allgather(&me, 1, MPI_DOUBLE, norms, 1, MPI_DOUBLE, x->comm),
                                "MPI_Allgather(norms)", err);
    st = sp_mpi_agree(x->comm, st, err);
    return st == SP_OK ? sp_ef21_weights("smooth", norms, x->n, x->w, err) : st;
}

/* ---- one unit, by role ---------------------------------------------------------------------- */

static sp_status site_unit(xrun *x, size_t i, int64_t o, size_t len, int64_t goff, uint64_t u,
                           sp_err *err) {
    sp_xmodel_read(&x->base, i, o, len, x->vb);
    sp_xmodel_read(&x->local, i, o, len, x->vl);
    for (size_t j = 0; j < len; j++) x->vl[j] -= x->vb[j]; /* v_i */
    x->up_msg.len = 0;
    /* data: the target is Σ w_i v_i (FedAvg by data size), so g_i tracks v_i itself; uniform and
     * smooth (EF21-W): the target is the mean, g_i tracks v_i/(n·w_i) so that Σ w_i g_i → mean. */
    float scale = x->weighted ? 1.0f : (float)(1.0 / ((double)x->n * x->w[x->mysite]));
    /* The measured residual (issue 21): ‖r‖² of r = s_i·v_i − g_i before, ‖r − C(r)‖² after
     * (with the decoded C(r), q8 rounding included); the server's step comes from them. */
    float *gi = x->g_i + goff;
    double r2 = 0.0, e2 = 0.0;
    for (size_t j = 0; j < len; j++) {
        double r = (double)(scale * x->vl[j] - gi[j]);
        r2 += r * r;
    }
    sp_status st = sp_ef21_uplink(&x->up, x->vl, scale, gi, len, stream_id(x->round, u, x->mysite),
                                  x->scratch, &x->up_msg, err);
    for (size_t j = 0; st == SP_OK && j < len; j++) {
        double e = (double)(scale * x->vl[j] - gi[j]);
        e2 += e * e;
    }
    x->stats_at = x->up_msg.len;
    const float stats[2] = {(float)r2, (float)e2};
    if (st == SP_OK) st = sp_cmp_encode(&x->dense, stats, 2, 0, &x->up_msg, err);
    if (st != SP_OK) sp_err_prefix(err, "site %d: tensor '%s'", x->mysite, x->base.t[i]->name);
    return st;
}

/* The server's step for a unit. Fixed --server-lr, or (default, auto) EF21's step for the
 * contraction the compressor achieved on this unit's residuals, over all sites:
 *   α̂ = 1 − Σ_s ‖r_s − C(r_s)‖² / Σ_s ‖r_s‖²,   γ = sp_ef21_step(α̂) = 1 − √(1 − α̂).
 * The objective is separable over coordinates, so every unit is its own EF21 problem and may
 * take its own step. Σ‖r_s‖² = 0: nothing left to send, γ = 1. stats[s] = {‖r_s‖², ‖r_s − c_s‖²}
 * as sent (f32), so every job computes the same γ. */
static double unit_step(const xrun *x, const float (*stats)[2]) {
    if (!x->o->lr_auto) return x->o->lr;
    double R = 0.0, E = 0.0;
    for (int s = 0; s < x->n; s++) {
        R += stats[s][0];
        E += stats[s][1];
    }
    return R > 0.0 ? sp_ef21_step(1.0 - E / R) : 1.0;
}

/* A site's residual norms: the dense 2-value message after its unit message. */
static sp_status read_stats(const uint8_t *m, size_t len, int site, float out[2], sp_err *err) {
    out[0] = out[1] = 0.0f;
    sp_status st = sp_cmp_decode_add(m, len, 1.0f, out, 2, err);
    if (st == SP_OK && !(out[0] >= 0.0f && out[1] >= 0.0f && isfinite(out[0]) && isfinite(out[1])))
        st = sp_err_set(err, SP_EFORMAT, "residual norms %g, %g are not finite non-negative",
                        (double)out[0], (double)out[1]);
    return st == SP_OK ? st : sp_err_prefix(err, "site %d", site);
}

/* Server: g += Σ w_s c_s (site order), then the downlink message of this unit. */
static sp_status server_unit(xrun *x, const uint8_t *const *msgs, const size_t *lens,
                             const float (*stats)[2], size_t i, int64_t o, size_t len,
                             int64_t goff, uint64_t u, sp_err *err) {
    float *g = x->g + goff;
    sp_status st = sp_ef21_aggregate(msgs, lens, x->w, x->n, g, len, err);
    if (st != SP_OK) return sp_err_prefix(err, "tensor '%s'", x->base.t[i]->name);
    const double step = unit_step(x, stats);
    x->step_sum += step * (double)len;
    x->step_w += (double)len;
    if (x->step_w == (double)len || step < x->step_min) x->step_min = step;
    if (x->step_w == (double)len || step > x->step_max) x->step_max = step;
    if (x->o->diag && !x->files)
        for (size_t j = 0; j < len; j++) {
            double mv = x->sumv[j]; /* the target: Σ_s w_s v_s (uniform, smooth: w_s = 1/n) */
            x->num += (g[j] - mv) * (g[j] - mv);
            x->den += mv * mv;
        }
    x->down_msg.len = 0;
    float lr = (float)step;
    if (!x->has_down) {
        for (size_t j = 0; j < len; j++) x->scratch[j] = lr * g[j];
        return sp_cmp_encode(&x->dense, x->scratch, len, 0, &x->down_msg, err);
    }
    /* EF21-BC: the sites hold x̂ = base; send C(x − x̂) with x += lr·g first. */
    float *xs = x->x + goff;
    for (size_t j = 0; j < len; j++) xs[j] += lr * g[j];
    sp_xmodel_read(&x->base, i, o, len, x->vb);
    return sp_ef21_downlink(&x->down, xs, x->vb, len, stream_id(x->round, u, 0xffff), x->scratch,
                            &x->down_msg, err);
}

/* Every job's rank 0: out = base + decode(down). */
static sp_status out_unit(xrun *x, const uint8_t *msg, size_t mlen, size_t i, int64_t o, size_t len,
                          sp_err *err) {
    sp_xmodel_read(&x->base, i, o, len, x->vb);
    SP_FORWARD(sp_cmp_decode_add(msg, mlen, 1.0f, x->vb, len, err));
    return sp_xout_write(&x->out, &x->base, i, x->vb, len, x->conv, err);
}

#define FOR_UNITS(x, i, o, len, goff, u)                                                        \
    for (size_t i = 0, u = 0; i < (x)->base.n; i++)                                             \
        for (int64_t o = 0, L_ = (x)->base.off[i + 1] - (x)->base.off[i], goff = (x)->base.off[i], \
                     len = 0;                                                                   \
             o < L_ && (len = L_ - o < (int64_t)SP_EXCHANGE_UNIT ? L_ - o : (int64_t)SP_EXCHANGE_UNIT, 1); \
             o += len, goff += len, u++)

static size_t n_units(const xrun *x) {
    size_t n = 0;
    for (size_t i = 0; i < x->base.n; i++)
        n += (size_t)((x->base.off[i + 1] - x->base.off[i] + (int64_t)SP_EXCHANGE_UNIT - 1) /
                      (int64_t)SP_EXCHANGE_UNIT);
    return n;
}

static void maybe_kill(const xrun *x, sp_exchange_kill at, size_t u) {
    if (x->o->kill_at == at && (at != SP_XKILL_MID || u == n_units(x) / 2)) raise(SIGKILL);
}

static sp_status open_out(xrun *x, sp_err *err) {
    SP_RETURN_IF(mkdir(x->o->out, 0755) != 0 && errno != EEXIST, err, SP_EIO, "--out %s: cannot "
                 "create: %s", x->o->out, strerror(errno));
    char p[4200];
    snprintf(p, sizeof p, "%s/model.safetensors", x->o->out);
    SP_FORWARD(sp_xout_open(&x->out, p, &x->base, x->round + 1, err));
    x->out_open = 1;
    return SP_OK;
}

/* ---- transports ----------------------------------------------------------------------------- */

static sp_status round_mpi(xrun *x, sp_err *err) {
    sp_status st = x->rank == 0 ? open_out(x, err) : SP_OK;
    st = sp_mpi_agree(x->comm, st, err);
    FOR_UNITS(x, i, o, len, goff, u) {
        /* Every rank leaves the loop at the same unit: agree at the top of each (a signal seen
         * by any rank stops them all here, before the state is committed). */
        if (st == SP_OK) st = sp_stop_check(x->o->stop_flag, "exchange", err);
        if ((st = sp_mpi_agree(x->comm, st, err)) != SP_OK) break;
        st = site_unit(x, i, o, (size_t)len, goff, u, err);
        st = sp_mpi_agree(x->comm, st, err);
        if (st == SP_OK && x->o->diag) {
            /* the target Σ_s t_s v_s (t = w for data weights, else 1/n), to rank 0:
             * diagnostics only, not counted */
            double *d = x->sumv, t = x->weighted ? x->w[x->mysite] : 1.0 / x->n;
            for (int64_t j = 0; j < len; j++) d[j] = t * x->vl[j];
            st = sp_mpi_check(MPI_Reduce(x->rank == 0 ? MPI_IN_PLACE : d, d, (int)len, MPI_DOUBLE,
                                         MPI_SUM, 0, x->comm), "MPI_Reduce(diagnostics)", err);
            st = sp_mpi_agree(x->comm, st, err);
        }
        sp_ef21_gathered all;
        if (st == SP_OK) st = sp_ef21_gather(x->comm, 0, x->up_msg.data, x->up_msg.len, &all, err);
        if (st != SP_OK) break;
        if (x->rank == 0) {
            /* each site sent its unit message, then its residual norms (2 values) */
            const uint8_t *m[SP_EXCHANGE_MAX_SITES];
            size_t ml[SP_EXCHANGE_MAX_SITES];
            float(*stats)[2] = x->stats;
            for (int s = 0; st == SP_OK && s < x->n; s++) {
                m[s] = all.data + all.off[s];
                x->r->up_bytes[s] += (double)all.len[s];
                sp_cmp_header h;
                st = sp_cmp_peek(m[s], all.len[s], &h, &ml[s], err);
                if (st == SP_OK) st = read_stats(m[s] + ml[s], all.len[s] - ml[s], s, stats[s], err);
            }
            if (st == SP_OK) st = server_unit(x, m, ml, (const float(*)[2])stats, i, o, (size_t)len, goff, u, err);
        }
        sp_ef21_gathered_free(&all);
        st = sp_mpi_agree(x->comm, st, err);
        uint64_t dl = x->down_msg.len;
        if (st == SP_OK) st = sp_mpi_check(MPI_Bcast(&dl, 1, MPI_UINT64_T, 0, x->comm), "MPI_Bcast", err);
        if (st == SP_OK && x->rank != 0) {
            x->down_msg.len = 0;
            st = sp_cmp_buf_reserve(&x->down_msg, (size_t)dl, err);
            x->down_msg.len = (size_t)dl;
        }
        st = sp_mpi_agree(x->comm, st, err);
        if (st == SP_OK)
            st = sp_mpi_check(MPI_Bcast(x->down_msg.data, (int)dl, MPI_BYTE, 0, x->comm),
                              "MPI_Bcast(downlink)", err);
        x->r->down_bytes += (double)dl;
        if (st == SP_OK && x->rank == 0) st = out_unit(x, x->down_msg.data, x->down_msg.len, i, o, (size_t)len, err);
        maybe_kill(x, SP_XKILL_MID, u);
    }
    return sp_mpi_agree(x->comm, st, err);
}

static sp_status round_files(xrun *x, sp_err *err) {
    const char *D = x->o->files_dir;
    char name[32];
    snprintf(name, sizeof name, "up-%05d", x->mysite);
    /* A: every site writes its messages. */
    sp_xf_writer w;
    sp_status st = sp_xf_create(&w, D, x->round, name, err);
    FOR_UNITS(x, i, o, len, goff, u) {
        if (st == SP_OK) st = sp_stop_check(x->o->stop_flag, "exchange", err);
        if (st != SP_OK) break;
        st = site_unit(x, i, o, (size_t)len, goff, u, err);
        /* two messages per unit: the compressed residual, then its norms */
        if (st == SP_OK) st = sp_xf_append(&w, x->up_msg.data, x->stats_at, err);
        if (st == SP_OK)
            st = sp_xf_append(&w, x->up_msg.data + x->stats_at, x->up_msg.len - x->stats_at, err);
        maybe_kill(x, SP_XKILL_MID, u);
    }
    if (st == SP_OK) st = sp_xf_commit(&w, err);
    else sp_xf_abort(&w);
    x->r->up_bytes[x->mysite] = (double)w.bytes; /* the whole file: messages and framing */
    st = sp_mpi_agree(x->comm, st, err);
    /* B: the server reads every site's file, aggregates, writes the downlink file. */
    if (st == SP_OK && x->is_server) {
        sp_xf_reader *rd = sp_calloc((size_t)x->n, sizeof *rd, err, "site readers");
        st = rd ? SP_OK : SP_ENOMEM;
        for (int s = 0; st == SP_OK && s < x->n; s++) {
            snprintf(name, sizeof name, "up-%05d", s);
            st = sp_xf_open_wait(&rd[s], D, x->round, name, x->o->timeout_s, x->o->stop_flag, err);
        }
        sp_xf_writer dw;
        if (st == SP_OK) st = sp_xf_create(&dw, D, x->round, "down", err);
        int dw_open = st == SP_OK;
        FOR_UNITS(x, i, o, len, goff, u) {
            if (st != SP_OK) break;
            const uint8_t *m[SP_EXCHANGE_MAX_SITES], *sm;
            size_t ml[SP_EXCHANGE_MAX_SITES], sl;
            float(*stats)[2] = x->stats;
            for (int s = 0; st == SP_OK && s < x->n; s++) {
                st = sp_xf_next(&rd[s], &m[s], &ml[s], err);
                if (st == SP_OK) st = sp_xf_next(&rd[s], &sm, &sl, err);
                if (st == SP_OK) st = read_stats(sm, sl, s, stats[s], err);
                if (st != SP_OK) sp_err_prefix(err, "%s", rd[s].path);
            }
            if (st == SP_OK) st = server_unit(x, m, ml, (const float(*)[2])stats, i, o, (size_t)len, goff, u, err);
            if (st == SP_OK) st = sp_xf_append(&dw, x->down_msg.data, x->down_msg.len, err);
        }
        for (int s = 0; rd && s < x->n; s++) {
            if (st == SP_OK && rd[s].i != rd[s].n)
                st = sp_err_set(err, SP_EFORMAT, "%s: %llu messages, the base has %zu units (2 "
                                "messages each)", rd[s].path, (unsigned long long)rd[s].n, n_units(x));
            if (rd[s].map) x->r->up_bytes[s] = (double)rd[s].len;
            sp_xf_close(&rd[s]);
        }
        free(rd);
        if (dw_open && st == SP_OK) st = sp_xf_commit(&dw, err);
        else if (dw_open) sp_xf_abort(&dw);
    }
    st = sp_mpi_agree(x->comm, st, err);
    /* C: rank 0 of every job writes the output from the downlink file. */
    if (st == SP_OK && x->rank == 0) {
        sp_xf_reader dr;
        st = open_out(x, err);
        if (st == SP_OK)
            st = sp_xf_open_wait(&dr, D, x->round, "down", x->o->timeout_s, x->o->stop_flag, err);
        if (st == SP_OK) {
            FOR_UNITS(x, i, o, len, goff, u) {
                (void)goff;
                (void)u;
                if (st != SP_OK) break;
                const uint8_t *m;
                size_t ml;
                st = sp_xf_next(&dr, &m, &ml, err);
                if (st == SP_OK) st = out_unit(x, m, ml, i, o, (size_t)len, err);
            }
            x->r->down_bytes = (double)dr.len;
            sp_xf_close(&dr);
        }
    }
    return sp_mpi_agree(x->comm, st, err);
}

/* ---- the round ------------------------------------------------------------------------------- */

static sp_status run(xrun *x, sp_err *err) {
    sp_status st = setup(x, err);
    st = sp_mpi_agree(x->comm, st, err);
    if (st == SP_OK)
        st = sp_mpi_agree(x->comm, sp_mpi_check(MPI_Bcast(&x->base_crc, 1, MPI_UINT32_T, 0, x->comm),
                                                "MPI_Bcast", err), err);
    if (st == SP_OK) st = load_state(x, err);
    if (st == SP_OK && x->round == 0 && !strcmp(x->o->weights, "smooth")) st = smooth_weights(x, err);
    SP_FORWARD(st);
    x->r->round = x->round + 1;
    x->r->sites = x->n;
    x->r->site0 = x->site0;
    x->r->jobsites = x->size;
    x->r->values = x->P;
    x->r->dense_bytes = 4.0 * (double)x->P;
    for (int s = 0; s < x->n; s++) x->r->weights[s] = x->w[s];
    for (int s = 0; s < x->n; s++)
        x->r->up_bytes[s] = x->files && s != x->mysite && !x->is_server ? -1.0 : 0.0;
    st = x->files ? round_files(x, err) : round_mpi(x, err);
    /* Output: config and tokenizer, then model.safetensors renamed last. */
    uint32_t out_crc = x->out.crc;
    if (st == SP_OK && x->rank == 0) {
        st = sp_xmodel_copy_aux(x->o->base, x->o->out, err);
        if (st == SP_OK) st = sp_xout_finish(&x->out, err);
        x->out_open = 0;
    }
    st = sp_mpi_agree(x->comm, st, err);
    if (st == SP_OK)
        st = sp_mpi_agree(x->comm, sp_mpi_check(MPI_Bcast(&out_crc, 1, MPI_UINT32_T, 0, x->comm),
                                                "MPI_Bcast", err), err);
    SP_FORWARD(st);
    maybe_kill(x, SP_XKILL_BEFORE_COMMIT, 0);
    sp_xstate_meta m;
    memset(&m, 0, sizeof m);
    m.round = x->round + 1;
    snprintf(m.compressor, sizeof m.compressor, "%s", x->up_name);
    snprintf(m.downlink, sizeof m.downlink, "%s", x->down_name);
    snprintf(m.weights, sizeof m.weights, "%s", x->o->weights);
    lr_text(x->o, m.lr, sizeof m.lr);
    m.sites = x->n;
    m.site0 = x->site0;
    m.jobsites = x->size;
    m.layout = x->layout;
    m.next_base = out_crc;
    sp_ckpt_opts co;
    sp_ckpt_opts_default(&co);
    sp_ckpt *ck = NULL;
    SP_FORWARD(sp_ckpt_create(&ck, x->comm, x->o->state, &co, err));
    st = sp_xstate_save(ck, x->rank, x->size, x->P, &m, x->g_i, x->g, x->x, x->w, x->server_job, err);
    sp_status d = sp_ckpt_destroy(ck, err);
    if (st == SP_OK) st = d;
    if (st == SP_OK) x->r->rel_error = x->o->diag && !x->files && x->den > 0 ? sqrt(x->num / x->den) : -1.0;
    x->r->step_mean = x->step_w > 0 ? x->step_sum / x->step_w : -1.0; /* server only */
    x->r->step_min = x->step_w > 0 ? x->step_min : -1.0;
    x->r->step_max = x->step_w > 0 ? x->step_max : -1.0;
    return sp_mpi_agree(x->comm, st, err);
}

sp_status sp_exchange_run(MPI_Comm comm, const sp_exchange_opts *o, sp_exchange_result *r,
                          sp_err *err) {
    xrun x;
    memset(&x, 0, sizeof x);
    memset(r, 0, sizeof *r);
    x.comm = comm;
    x.o = o;
    x.r = r;
    MPI_Comm_rank(comm, &x.rank);
    MPI_Comm_size(comm, &x.size);
    double t0 = now_s();
    sp_status st = run(&x, err);
    if (x.out_open) sp_xout_abort(&x.out);
    r->seconds = now_s() - t0;
    sp_xmodel_close(&x.local);
    sp_xmodel_close(&x.base);
    free(x.g_i);
    free(x.g);
    free(x.x);
    free(x.w);
    free(x.vb);
    free(x.vl);
    free(x.scratch);
    free(x.sumv);
    free(x.stats);
    free(x.conv);
    sp_cmp_buf_free(&x.up_msg);
    sp_cmp_buf_free(&x.down_msg);
    return st;
}
