/* sp_search.c — the search loop (see sp_search.h). Every rank runs the same loop on the same
 * genomes (the RNG streams are identical everywhere); only candidate evaluation is split. */
#include "pipeline/search/sp_search_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <errno.h>
#include <sys/stat.h>

#include "mpi/sp_mpi.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *sp_search_method_name(sp_search_method m) {
    return m == SP_SEARCH_SENSITIVITY ? "sensitivity" : "evolution";
}

void sp_search_defaults(sp_search_opts *o) {
    memset(o, 0, sizeof *o);
    o->ev.topk = 64;
    o->ev.group_by = SP_SGROUPS_SIZE;
    o->generations = 150;
    o->offspring = 128;
    o->n_stages = 3;
    o->stages[0] = 2048; o->stages[1] = 16384; o->stages[2] = 131072;
    o->survivors[0] = 16; o->survivors[1] = 4; o->survivors[2] = 1;
    o->init_candidates = 8;
    o->init = SP_SEARCH_INIT_SENSITIVITY;
    o->screen = 1;
}

static sp_status check_opts(const sp_search_opts *o, sp_err *err) {
    SP_RETURN_IF(!o->ev.qdir, err, SP_EINVAL, "search: --model is required (a quantize output "
                 "with several --levels)");
    SP_RETURN_IF(!o->ev.calib_path, err, SP_EINVAL, "search: --calib is required");
    SP_RETURN_IF(!o->out_map, err, SP_EINVAL, "search: --out is required");
    SP_RETURN_IF(!(o->target_bits > 0) && !o->target_spec, err, SP_EINVAL,
                 "search: --target-bits is required");
    return sp_search_check_schedule("search", o->stages, o->n_stages, o->survivors, o->n_stages,
                                    o->offspring, err);
}

sp_status sp_search_targets(const char *spec, const sp_sgenome_space *s, double *targets,
                            char labels[][24], int *n, sp_err *err) {
    *n = 0;
    const char *p = spec;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char tok[24];
        SP_RETURN_IF(len == 0 || len >= sizeof tok, err, SP_EINVAL, "search: --target-bits: "
                     "bad entry '%.*s' (numbers or uX, comma-separated)", (int)len, p);
        SP_RETURN_IF(*n >= SP_SEARCH_MAX_TARGETS, err, SP_EINVAL, "search: --target-bits: more "
                     "than %d targets", SP_SEARCH_MAX_TARGETS);
        memcpy(tok, p, len);
        tok[len] = 0;
        int u = tok[0] == 'u';
        char *end = NULL;
        double v = strtod(tok + u, &end);
        SP_RETURN_IF(!end || *end || end == tok + u || !(v > 0) || v > 64, err, SP_EINVAL,
                     "search: --target-bits: '%s' is not a number of bits (or uX)", tok);
        if (u) {
            /* uX: uniform X-bit's stored average, interpolated linearly between stored levels */
            int k = 0;
            while (k + 1 < s->n_levels && s->levels[k + 1] < v) k++;
            SP_RETURN_IF(v < s->levels[0] || v > s->levels[s->n_levels - 1], err, SP_EINVAL,
                         "search: --target-bits: '%s' is outside the stored levels (%d to %d "
                         "bits)", tok, s->levels[0], s->levels[s->n_levels - 1]);
            double a = sp_sgenome_uniform_avg(s, k);
            if (v == s->levels[k]) {
                v = a;
            } else {
                double b = sp_sgenome_uniform_avg(s, k + 1);
                double f = (v - s->levels[k]) / (double)(s->levels[k + 1] - s->levels[k]);
                v = a + f * (b - a);
            }
            /* printed to 6 decimals everywhere: the target is that printed value */
            char num[32];
            snprintf(num, sizeof num, "%.6f", v);
            v = strtod(num, NULL);
        }
        targets[*n] = v;
        snprintf(labels[*n], 24, "%s", tok);
        (*n)++;
        if (!e) break;
        p = e + 1;
    }
    SP_RETURN_IF(*n == 0, err, SP_EINVAL, "search: --target-bits is empty");
    return SP_OK;
}

sp_status sp_search_check_schedule(const char *cmd, const int *stages, int n_stages,
                                   const int *survivors, int n_survivors, int offspring,
                                   sp_err *err) {
    SP_RETURN_IF(n_stages < 1, err, SP_EINVAL, "%s: --stages needs at least one stage", cmd);
    SP_RETURN_IF(n_survivors != n_stages, err, SP_EINVAL, "%s: --survivors has %d values for %d "
                 "--stages", cmd, n_survivors, n_stages);
    for (int s = 0; s < n_stages; s++) {
        SP_RETURN_IF(survivors[s] < 1, err, SP_EINVAL, "%s: --survivors must be >= 1", cmd);
        SP_RETURN_IF(s > 0 && stages[s] < stages[s - 1], err, SP_EINVAL,
                     "%s: --stages must not decrease", cmd);
        SP_RETURN_IF(s > 0 && survivors[s] > survivors[s - 1], err, SP_EINVAL,
                     "%s: --survivors must not increase", cmd);
    }
    SP_RETURN_IF(survivors[0] > offspring, err, SP_EINVAL, "%s: --survivors %d is more than "
                 "--offspring %d", cmd, survivors[0], offspring);
    return SP_OK;
}

/* Windows of stage `stage` of generation `gen`: a seeded partial Fisher-Yates draw from the
 * pool, fresh for every (generation, stage). gen = -1 is the initial selection, -3 the
 * sensitivity table (-2 was the removed greedy's error model). */
static void draw_n(const sp_search_state *s, int gen, int stage, int n, int *w, int *idx) {
    int pool = sp_seval_pool(s->ev);
    uint64_t rng = sp_sgenome_seed(s->o->seed, (uint64_t)(gen + 2) * 64u + (uint64_t)stage + 1u);
    for (int i = 0; i < pool; i++) idx[i] = i;
    for (int i = 0; i < n; i++) {
        int j = i + (int)(sp_sgenome_rand(&rng) % (uint64_t)(pool - i));
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        w[i] = idx[i];
    }
}

static void draw_windows(const sp_search_state *s, int gen, int stage, int *w, int *idx) {
    draw_n(s, gen, stage, s->stage_windows[stage], w, idx);
}

/* Order of candidates by fitness (ties: lower index), insertion sort (n is small). */
static void rank_by_fitness(const double *f, int n, int *order) {
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && (f[order[k]] < f[order[k - 1]] ||
                                  (f[order[k]] == f[order[k - 1]] && order[k] < order[k - 1])); k--) {
            int t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
}

typedef struct {
    uint8_t *genomes;   /* [cap, n]: children, then the parent's copy last     */
    const uint8_t **cand, **tmpc;
    double *fit, *pred;
    int *order, *win, *idx;
    int cap;
} gen_scratch;

static void scratch_free(gen_scratch *g) {
    free(g->genomes);
    free(g->cand);
    free(g->tmpc);
    free(g->fit);
    free(g->pred);
    free(g->order);
    free(g->win);
    free(g->idx);
}

static sp_status scratch_alloc(gen_scratch *g, const sp_search_state *s, sp_err *err) {
    memset(g, 0, sizeof *g);
    int screen = s->o->screen > 1 ? s->o->screen : 1;
    int cap = s->o->offspring * screen + s->o->init_candidates + 2, pool = sp_seval_pool(s->ev);
    g->cap = cap;
    g->genomes = sp_calloc((size_t)cap, (size_t)s->space->n, err, "genomes");
    g->cand = g->genomes ? sp_calloc((size_t)cap, sizeof *g->cand, err, "candidates") : NULL;
    g->tmpc = g->cand ? sp_calloc((size_t)cap, sizeof *g->tmpc, err, "candidates") : NULL;
    g->fit = g->tmpc ? sp_calloc((size_t)cap, sizeof *g->fit, err, "fitness") : NULL;
    g->pred = g->fit ? sp_calloc((size_t)cap, sizeof *g->pred, err, "predictions") : NULL;
    g->order = g->pred ? sp_calloc((size_t)cap, sizeof *g->order, err, "order") : NULL;
    g->win = g->order ? sp_calloc((size_t)pool, sizeof *g->win, err, "windows") : NULL;
    g->idx = g->win ? sp_calloc((size_t)pool, sizeof *g->idx, err, "windows") : NULL;
    if (!g->idx) {
        scratch_free(g);
        return SP_ENOMEM;
    }
    return SP_OK;
}

/* Score cands on stage `stage` of generation gen; counts go to the generation's totals. */
static sp_status score(sp_search_state *s, gen_scratch *g, int gen, int stage, int n,
                       const uint8_t *prefix, sp_search_hist *h, sp_err *err) {
    draw_windows(s, gen, stage, g->win, g->idx);
    sp_seval_counts c;
    SP_FORWARD(sp_seval_run(s->ev, g->win, s->stage_windows[stage], prefix, g->cand, n, g->fit,
                            &c, err));
    h->evals += c.layer_evals;
    h->full += c.full_evals;
    return SP_OK;
}

/* The starting parent: the allocation of the sensitivity table (--method sensitivity,
 * --init sensitivity, the default); else uniform when it meets the target exactly, else the
 * best of init_candidates random fills scored on a first-stage draw. */
static sp_status initial_parent(sp_search_state *s, gen_scratch *g, sp_err *err) {
    int n = s->space->n;
    if (s->table && (s->o->method == SP_SEARCH_SENSITIVITY ||
                     s->o->init == SP_SEARCH_INIT_SENSITIVITY))
        return sp_sgenome_allocate(s->space, s->table, s->o->target_bits, SP_SGENOME_DP_CELLS,
                                   s->parent, &s->exact, err);
    uint64_t rng = sp_sgenome_seed(s->o->seed, 7);
    int uniform = 0;
    SP_FORWARD(sp_sgenome_init(s->space, s->o->target_bits, &rng, s->parent, &uniform, err));
    s->uniform_start = uniform;
    if (uniform || s->o->method != SP_SEARCH_EVO) return SP_OK;
    int k = s->o->init_candidates;
    for (int i = 0; i < k; i++) {
        uint8_t *c = g->genomes + (size_t)i * (size_t)n;
        if (i == 0) memcpy(c, s->parent, (size_t)n);
        else SP_FORWARD(sp_sgenome_init(s->space, s->o->target_bits, &rng, c, &uniform, err));
        g->cand[i] = c;
    }
    sp_search_hist h = {0};
    SP_FORWARD(score(s, g, -1, 0, k, g->cand[0], &h, err));
    rank_by_fitness(g->fit, k, g->order);
    memcpy(s->parent, g->cand[g->order[0]], (size_t)n);
    s->evals += h.evals;
    s->full += h.full;
    return SP_OK;
}

/* One generation of (1 + λ) evolution with staged selection. With a surrogate, screen × λ
 * children are made and its best λ go to stage 1; every stage's measurements refit it. */
static sp_status generation(sp_search_state *s, gen_scratch *g, sp_search_hist *h, sp_err *err) {
    int n = s->space->n, gen = s->gen, nc = 0;
    const sp_search_opts *o = s->o;
    int make = o->offspring * (s->sur_on && o->screen > 1 ? o->screen : 1);
    for (int i = 0; i < make; i++) {
        uint8_t *c = g->genomes + (size_t)i * (size_t)n;
        if (!sp_sgenome_mutate(s->space, s->parent, o->target_bits, (sp_sgroups)o->ev.group_by,
                               &s->rng, c))
            break;
        g->cand[nc++] = c;
    }
    SP_RETURN_IF(nc == 0, err, SP_EINVAL, "search: no mutation of the parent fits --target-bits "
                 "%.6f with --groups as given (try --groups none)", o->target_bits);
    h->predicted = h->rho = NAN;
    const uint8_t *kept[256 + 1];
    double kpred[256 + 1];
    if (s->sur_on) {
        for (int i = 0; i < nc; i++) g->pred[i] = sp_ssurrogate_predict(&s->sur, g->cand[i]);
        if (nc > o->offspring) { /* screening: the surrogate's best λ, ties to the first made */
            rank_by_fitness(g->pred, nc, g->order);
            const uint8_t **tmp = g->tmpc;
            double *tp = g->fit; /* not measured yet: scratch */
            for (int i = 0; i < o->offspring; i++) {
                tmp[i] = g->cand[g->order[i]];
                tp[i] = g->pred[g->order[i]];
            }
            for (int i = 0; i < o->offspring; i++) {
                g->cand[i] = tmp[i];
                g->pred[i] = tp[i];
            }
            nc = o->offspring;
        }
    }
    uint8_t *parent_copy = g->genomes + (size_t)(g->cap - 1) * (size_t)n;
    memcpy(parent_copy, s->parent, (size_t)n);
    double ppred = s->sur_on ? sp_ssurrogate_predict(&s->sur, parent_copy) : 0.0;
    for (int st = 0; st < o->n_stages; st++) {
        int last = st == o->n_stages - 1;
        if (last) {
            g->pred[nc] = ppred;
            g->cand[nc++] = parent_copy; /* the parent competes in the last stage */
        }
        SP_FORWARD(score(s, g, gen, st, nc, parent_copy, h, err));
        if (s->sur_on) {
            if (st == 0) h->rho = sp_ssurrogate_spearman(g->pred, g->fit, nc);
            SP_FORWARD(sp_search_observe(s, g->cand, g->fit, nc, err));
        }
        double pfit = g->fit[nc - 1]; /* the parent's, in the last stage */
        rank_by_fitness(g->fit, nc, g->order);
        int keep = o->survivors[st] < nc ? o->survivors[st] : nc;
        SP_RETURN_IF(keep > 256, err, SP_EINVAL, "search: --survivors above 256");
        double bestf = g->fit[g->order[0]];
        for (int i = 0; i < keep; i++) {
            kept[i] = g->cand[g->order[i]];
            kpred[i] = g->pred[g->order[i]];
        }
        for (int i = 0; i < keep; i++) {
            g->cand[i] = kept[i];
            g->pred[i] = kpred[i];
        }
        nc = keep;
        if (last) {
            h->accepted = g->cand[0] != parent_copy &&
                          memcmp(g->cand[0], parent_copy, (size_t)n) != 0;
            if (s->sur_on) h->predicted = pfit + g->pred[0] - ppred;
            memcpy(s->parent, g->cand[0], (size_t)n);
            h->fitness = bestf;
        }
    }
    if (s->sur_on) SP_FORWARD(sp_ssurrogate_fit(&s->sur, err));
    return SP_OK;
}

sp_status sp_search_observe(sp_search_state *s, const uint8_t *const *g, const double *y, int n,
                            sp_err *err) {
    size_t m = (size_t)s->space->n;
    if (s->n_obs + n > s->cap_obs) {
        int64_t cap = s->cap_obs ? 2 * s->cap_obs : 256;
        while (cap < s->n_obs + n) cap *= 2;
        uint8_t *a = realloc(s->obs_g, (size_t)cap * m);
        if (a) s->obs_g = a;
        double *b = a ? realloc(s->obs_y, (size_t)cap * sizeof *b) : NULL;
        if (b) s->obs_y = b;
        int32_t *c = b ? realloc(s->obs_draw, (size_t)cap * sizeof *c) : NULL;
        if (c) s->obs_draw = c;
        SP_RETURN_IF(!c, err, SP_ENOMEM, "search: out of memory for the surrogate's data");
        s->cap_obs = cap;
    }
    for (int i = 0; i < n; i++) {
        memcpy(s->obs_g + (size_t)(s->n_obs + i) * m, g[i], m);
        s->obs_y[s->n_obs + i] = y[i];
        s->obs_draw[s->n_obs + i] = s->n_draws;
    }
    s->n_obs += n;
    s->n_draws++;
    sp_ssurrogate_add(&s->sur, g, y, n);
    return SP_OK;
}

static void progress(const sp_search_state *s, const sp_search_hist *h, double t0, int g0) {
    if (s->rank != 0) return;
    FILE *f = s->o->progress_to_stderr ? stderr : stdout;
    double el = now_s() - t0;
    int done = s->gen - g0, left = s->o->generations - s->gen;
    double eta = done > 0 ? el / done * left : 0.0;
    char sur[64] = "";
    if (!isnan(h->predicted))
        snprintf(sur, sizeof sur, "  predicted %.6f (rho %.2f)", h->predicted, h->rho);
    fprintf(f, "gen %4d/%d  KL %.6f%s  %-8s  layer evals %lld (full re-runs %lld)  %.2f s/gen  "
               "ETA %.0f s\n", s->gen, s->o->generations, h->fitness, sur,
            h->accepted ? "accepted" : "kept", (long long)h->evals, (long long)h->full,
            done > 0 ? el / done : 0.0, eta);
    fflush(f);
}

static int stop_requested(const sp_search_state *s) {
    int mine = s->o->stop_flag && *s->o->stop_flag ? 1 : 0, any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, s->comm);
    return any;
}

/* The most layer evaluations one generation can cost: every candidate of every stage run from
 * layer 0 (no prefix shared with the parent), i.e. the generation's full re-run count. It
 * depends on the schedule only: L · Σ_st n_st · w_st, with n_0 = offspring, n_st =
 * survivors[st−1] and the parent added in the last stage. The counted evaluations are never
 * more: per window Σ_j (L − f_j) + max_j f_j ≤ n·L since max_j f_j ≤ Σ_j f_j. */
static int64_t generation_worst_evals(const sp_search_state *s) {
    const sp_search_opts *o = s->o;
    int64_t items = 0;
    for (int st = 0; st < o->n_stages; st++) {
        int64_t n = st == 0 ? o->offspring : o->survivors[st - 1];
        if (st == o->n_stages - 1) n++;
        items += n * s->stage_windows[st];
    }
    return items * sp_seval_config(s->ev)->n_layers;
}

/* One target of the job: s has the shared evaluator, table and stage sizes; s->o is this
 * target's options (target_bits, out_map). */
static sp_status run_target(sp_search_state *s, gen_scratch *g, int resume,
                            sp_search_target_result *tr, sp_err *err) {
    const sp_search_opts *o = s->o;
    MPI_Comm comm = s->comm;
    double t0 = now_s();
    s->gen = s->n_hist = s->accepted = s->uniform_start = s->checkpoints = 0;
    s->evals = s->full = 0;
    s->parent_fitness = 0;
    s->n_obs = 0;
    s->n_draws = 0;
    sp_ssurrogate_free(&s->sur);
    s->sur_on = s->table && o->method == SP_SEARCH_EVO;
    if (s->sur_on) SP_FORWARD(sp_ssurrogate_init(&s->sur, s->space, s->table, err));
    int found = 0;
    char warn[2048] = "";
    sp_status st = SP_OK;
    if (resume) st = sp_search_restore(s, &found, warn, sizeof warn, err);
    if (st == SP_OK && s->rank == 0 && warn[0]) fprintf(stderr, "%s", warn);
    if (st == SP_OK && !found) {
        st = sp_mpi_agree(comm, initial_parent(s, g, err), err);
        s->rng = sp_sgenome_seed(o->seed, 11);
        if (st == SP_OK && o->checkpoint_dir && s->rank == 0) st = sp_search_write_run(s, err);
        st = sp_mpi_agree(comm, st, err);
    }
    int g0 = s->gen, stopped = 0;
    int gens = o->method != SP_SEARCH_EVO ? 0 : o->generations;
    /* --max-evals N: a generation starts only if it cannot take the total (the table's and
     * this target's layer evaluations, rank-count independent) past N even in its worst case,
     * so a run never exceeds its budget; the schedule, not luck, decides where it stops. */
    int64_t worst = generation_worst_evals(s);
    while (st == SP_OK && s->gen < gens &&
           !(o->max_evals > 0 && s->sens_evals + s->evals + worst > o->max_evals)) {
        sp_search_hist h = {0};
        st = generation(s, g, &h, err);
        if (st) break;
        s->hist[s->gen] = h;
        s->n_hist = s->gen + 1;
        s->gen++;
        s->evals += h.evals;
        s->full += h.full;
        s->accepted += h.accepted;
        s->parent_fitness = h.fitness;
        progress(s, &h, t0, g0);
        int stop = stop_requested(s);
        if (o->checkpoint_dir && (s->gen < gens || stop)) st = sp_search_checkpoint(s, err);
        if (st == SP_OK && stop && s->gen < gens) {
            stopped = 1;
            break;
        }
    }
    /* The final map's fitness on a last-stage draw when no generation measured it. */
    if (st == SP_OK && !stopped && s->n_hist == 0) {
        sp_search_hist h = {0};
        g->cand[0] = s->parent;
        st = score(s, g, gens, o->n_stages - 1, 1, s->parent, &h, err);
        s->parent_fitness = g->fit[0];
        s->evals += h.evals;
        s->full += h.full;
    }
    if (st == SP_OK && stopped)
        st = sp_err_set(err, SP_EINTERRUPTED, o->checkpoint_dir
                        ? "stopped by a signal after generation %d of %d; checkpoint written, "
                          "continue with: shardpress resume %s"
                        : "stopped by a signal after generation %d of %d (no --checkpoint-dir%s: "
                          "nothing saved)", s->gen, gens, o->checkpoint_dir ? o->checkpoint_dir : "");
    if (st == SP_OK && s->rank == 0) st = sp_search_write_outputs(s, err);
    st = sp_mpi_agree(comm, st, err);
    tr->target_bits = o->target_bits;
    tr->avg_bits = sp_sgenome_avg(s->space, s->parent);
    tr->fitness_kl = s->parent_fitness;
    tr->layer_evals = s->evals;
    tr->start_generation = g0;
    snprintf(tr->out, sizeof tr->out, "%s", o->out_map);
    return st;
}

/* The table once per job: from --sensitivity FILE, from the checkpoint directory on resume,
 * or measured on a fresh draw of windows and saved as OUT.sensitivity.json (and in D). */
static sp_status get_table(sp_search_state *s, gen_scratch *g, int resume, sp_search_result *res,
                           sp_err *err) {
    const sp_search_opts *o = s->o;
    char path[4200];
    if (resume) { /* the run's own copy: its cost counts towards --max-evals as before */
        snprintf(path, sizeof path, "%s/sensitivity.json", o->checkpoint_dir);
        res->sens_loaded = 1;
        return sp_search_sens_load(s, path, err);
    }
    if (o->sensitivity_file) { /* measured by another run: this one did not pay for it */
        res->sens_loaded = 1;
        SP_FORWARD(sp_search_sens_load(s, o->sensitivity_file, err));
        s->sens_evals = s->sens_full = 0;
    } else {
        double t0 = now_s();
        int ctx = sp_seval_ctx(s->ev), pool = sp_seval_pool(s->ev);
        int tok = o->sensitivity_tokens > 0 ? o->sensitivity_tokens : o->stages[0];
        int nw = (tok + ctx - 1) / ctx;
        if (nw > pool) nw = pool;
        draw_n(s, -3, 0, nw, g->win, g->idx);
        sp_seval_counts c = {0};
        sp_seval_set_stop(s->ev, o->stop_flag); /* minutes to hours, before any checkpoint */
        SP_FORWARD(sp_seval_sensitivity(s->ev, g->win, nw, s->table, &c, err));
        sp_seval_set_stop(s->ev, o->checkpoint_dir ? NULL : o->stop_flag);
        s->sens_evals = c.layer_evals;
        s->sens_full = c.full_evals;
        s->sens_seconds = now_s() - t0;
        res->sens_measured = 1;
        res->sens_windows = nw;
        snprintf(path, sizeof path, "%s.sensitivity.json", o->out_map);
        sp_status st = s->rank == 0 ? sp_search_sens_save(s, path, g->win, nw, err) : SP_OK;
        SP_FORWARD(sp_mpi_agree(s->comm, st, err));
    }
    if (o->checkpoint_dir) {
        snprintf(path, sizeof path, "%s/sensitivity.json", o->checkpoint_dir);
        sp_status st = SP_OK;
        if (s->rank == 0 && mkdir(o->checkpoint_dir, 0755) != 0 && errno != EEXIST)
            st = sp_err_set(err, SP_EIO, "%s: cannot create: %s", o->checkpoint_dir, strerror(errno));
        if (st == SP_OK && s->rank == 0) st = sp_search_sens_save(s, path, g->win, res->sens_windows, err);
        SP_FORWARD(sp_mpi_agree(s->comm, st, err));
    }
    return SP_OK;
}

/* The job: fresh (resume = 0) or continued from s->o->checkpoint_dir. */
static sp_status search_job(MPI_Comm comm, const sp_search_opts *o, int resume,
                            sp_search_result *res, sp_err *err) {
    double t0 = now_s();
    memset(res, 0, sizeof *res);
    sp_search_state s;
    memset(&s, 0, sizeof s);
    s.comm = comm;
    s.o = o;
    MPI_Comm_rank(comm, &s.rank);
    MPI_Comm_size(comm, &s.size);
    gen_scratch g;
    memset(&g, 0, sizeof g);
    sp_status st = check_opts(o, err);
    /* issue 21: --out is checked before any work (it used to fail after the whole search) */
    if (st == SP_OK && s.rank == 0) st = sp_search_check_out(o->out_map, err);
    st = sp_mpi_agree(comm, st, err);
    /* With --checkpoint-dir a signal is honoured at the end of the generation (a checkpoint is
     * written, exit 3, resume goes on); without one nothing could be saved, so the evaluation
     * stops at once. The sensitivity table always stops at once (set around it below). */
    if (st == SP_OK) st = sp_seval_open(&s.ev, comm, &o->ev, err);
    if (st == SP_OK) sp_seval_set_stop(s.ev, o->checkpoint_dir ? NULL : o->stop_flag);
    if (st) return st;
    s.space = sp_seval_space(s.ev);
    int ctx = sp_seval_ctx(s.ev), pool = sp_seval_pool(s.ev);
    res->ctx = ctx;
    res->pool_windows = pool;
    res->n_levels = s.space->n_levels;
    res->n_modules = s.space->n;
    for (int k = 0; k < s.space->n_levels; k++) {
        res->levels[k] = s.space->levels[k];
        res->uniform_avg[k] = sp_sgenome_uniform_avg(s.space, k);
    }
    double tv[SP_SEARCH_MAX_TARGETS];
    char labels[SP_SEARCH_MAX_TARGETS][24];
    int nt = 1;
    tv[0] = o->target_bits;
    if (o->target_spec) st = sp_search_targets(o->target_spec, s.space, tv, labels, &nt, err);
    for (int i = 0; i < nt && st == SP_OK; i++) { /* before any table is measured */
        double lo = sp_sgenome_uniform_avg(s.space, 0);
        double hi = sp_sgenome_uniform_avg(s.space, s.space->n_levels - 1);
        if (tv[i] < lo - SP_SGENOME_TOL || tv[i] > hi + SP_SGENOME_TOL)
            st = sp_err_set(err, SP_EINVAL, "search: --target-bits %.6f is outside what the "
                            "stored levels allow: %.6f (uniform %d-bit) to %.6f (uniform %d-bit)",
                            tv[i], lo, s.space->levels[0], hi, s.space->levels[s.space->n_levels - 1]);
    }
    if (st == SP_OK && nt > 1 && o->checkpoint_dir)
        st = sp_err_set(err, SP_EINVAL, "search: --checkpoint-dir takes one --target-bits "
                        "(%d given)", nt);
    /* Stage sizes in windows; the first must fit in the text, later ones are capped. */
    for (int i = 0; i < o->n_stages && st == SP_OK; i++) {
        int w = (int)((o->stages[i] + ctx - 1) / ctx);
        if (i == 0 && w > pool)
            st = sp_err_set(err, SP_EINVAL, "%s: the calibration text makes %d windows of %d "
                            "tokens (%d tokens), shorter than the first stage of %d tokens",
                            o->ev.calib_path, pool, ctx, pool * ctx, o->stages[0]);
        s.stage_windows[i] = w < pool ? w : pool;
    }
    s.parent = st == SP_OK ? sp_calloc((size_t)s.space->n, 1, err, "parent") : NULL;
    s.hist = s.parent ? sp_calloc((size_t)o->generations + 1, sizeof *s.hist, err, "history") : NULL;
    if (st == SP_OK && !s.hist) st = SP_ENOMEM;
    if (st == SP_OK) st = scratch_alloc(&g, &s, err);
    int need_table = o->method == SP_SEARCH_SENSITIVITY ||
                     (o->method == SP_SEARCH_EVO &&
                      (o->init == SP_SEARCH_INIT_SENSITIVITY || o->screen > 1));
    if (st == SP_OK && need_table) {
        s.table = sp_calloc((size_t)s.space->n * (size_t)s.space->n_levels, sizeof *s.table, err,
                            "sensitivity table");
        if (!s.table) st = SP_ENOMEM;
    }
    st = sp_mpi_agree(comm, st, err);
    if (st == SP_OK && need_table) st = get_table(&s, &g, resume, res, err);
    res->sens_exact = 1;
    for (int i = 0; i < nt && st == SP_OK; i++) {
        sp_search_opts ot = *o;
        char out[1024];
        ot.target_bits = tv[i];
        if (nt > 1) {
            snprintf(out, sizeof out, "%s.%s", o->out_map, labels[i]);
            ot.out_map = out;
        }
        s.o = &ot;
        s.exact = 1;
        st = run_target(&s, &g, resume, &res->per[i], err);
        s.o = o;
        if (!s.exact) res->sens_exact = 0;
        res->n_targets = i + 1;
        res->target_bits = tv[i];
        res->avg_bits = res->per[i].avg_bits;
        res->fitness_kl = s.parent_fitness;
        res->generations = s.gen;
        res->accepted = s.accepted;
        res->uniform_start = s.uniform_start;
        res->layer_evals += s.evals;
        res->layer_evals_full += s.full;
        res->checkpoints += s.checkpoints;
        res->start_generation = res->per[i].start_generation;
    }
    res->reference_windows = sp_seval_reference_windows(s.ev);
    res->sens_evals = s.sens_evals;
    res->sens_evals_full = s.sens_full;
    res->sens_seconds = s.sens_seconds;
    res->ranks = s.size;
    res->seconds = now_s() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double mine = (double)ru.ru_maxrss / 1024.0;
    MPI_Allreduce(&mine, &res->peak_rss_mb_max, 1, MPI_DOUBLE, MPI_MAX, comm);
    free(s.table);
    scratch_free(&g);
    free(s.parent);
    free(s.hist);
    sp_ssurrogate_free(&s.sur);
    free(s.obs_g);
    free(s.obs_y);
    free(s.obs_draw);
    sp_seval_close(s.ev);
    return st;
}

sp_status sp_search_run(MPI_Comm comm, const sp_search_opts *o, sp_search_result *res,
                        sp_err *err) {
    return search_job(comm, o, 0, res, err);
}

sp_status sp_search_job_resume(MPI_Comm comm, const sp_search_opts *o, sp_search_result *res,
                               sp_err *err);
sp_status sp_search_job_resume(MPI_Comm comm, const sp_search_opts *o, sp_search_result *res,
                               sp_err *err) {
    return search_job(comm, o, 1, res, err);
}
