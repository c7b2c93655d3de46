/* sp_search.c — the search loop (see sp_search.h). Every rank runs the same loop on the same
 * genomes (the RNG streams are identical everywhere); only candidate evaluation is split. */
#include "pipeline/search/sp_search_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "mpi/sp_mpi.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
}

static sp_status check_opts(const sp_search_opts *o, sp_err *err) {
    SP_RETURN_IF(!o->ev.qdir, err, SP_EINVAL, "search: --model is required (a quantize output "
                 "with several --levels)");
    SP_RETURN_IF(!o->ev.calib_path, err, SP_EINVAL, "search: --calib is required");
    SP_RETURN_IF(!o->out_map, err, SP_EINVAL, "search: --out is required");
    SP_RETURN_IF(!(o->target_bits > 0), err, SP_EINVAL, "search: --target-bits is required");
    return sp_search_check_schedule("search", o->stages, o->n_stages, o->survivors, o->n_stages,
                                    o->offspring, err);
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
 * pool, fresh for every (generation, stage). gen = -1 is the initial selection, -2 the
 * greedy error model. */
static void draw_windows(const sp_search_state *s, int gen, int stage, int *w, int *idx) {
    int pool = sp_seval_pool(s->ev), n = s->stage_windows[stage];
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
    uint8_t *genomes;   /* [offspring + init + 1, n]                         */
    const uint8_t **cand;
    double *fit;
    int *order, *win, *idx;
} gen_scratch;

static void scratch_free(gen_scratch *g) {
    free(g->genomes);
    free(g->cand);
    free(g->fit);
    free(g->order);
    free(g->win);
    free(g->idx);
}

static sp_status scratch_alloc(gen_scratch *g, const sp_search_state *s, sp_err *err) {
    memset(g, 0, sizeof *g);
    int cap = s->o->offspring + s->o->init_candidates + 2, pool = sp_seval_pool(s->ev);
    g->genomes = sp_calloc((size_t)cap, (size_t)s->space->n, err, "genomes");
    g->cand = g->genomes ? sp_calloc((size_t)cap, sizeof *g->cand, err, "candidates") : NULL;
    g->fit = g->cand ? sp_calloc((size_t)cap, sizeof *g->fit, err, "fitness") : NULL;
    g->order = g->fit ? sp_calloc((size_t)cap, sizeof *g->order, err, "order") : NULL;
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

/* The starting parent: uniform when it meets the target exactly, the greedy map with --init
 * greedy, else the best of init_candidates random fills scored on a first-stage draw. */
static sp_status initial_parent(sp_search_state *s, gen_scratch *g, const double *greedy_g,
                                sp_err *err) {
    int n = s->space->n;
    if (greedy_g) {
        SP_FORWARD(sp_sgenome_greedy(s->space, greedy_g, s->o->target_bits, s->parent, err));
        return SP_OK;
    }
    uint64_t rng = sp_sgenome_seed(s->o->seed, 7);
    int uniform = 0;
    SP_FORWARD(sp_sgenome_init(s->space, s->o->target_bits, &rng, s->parent, &uniform, err));
    s->uniform_start = uniform;
    if (uniform || s->o->method == SP_SEARCH_GREEDY) return SP_OK;
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

/* One generation of (1 + λ) evolution with staged selection. */
static sp_status generation(sp_search_state *s, gen_scratch *g, sp_search_hist *h, sp_err *err) {
    int n = s->space->n, gen = s->gen, nc = 0;
    const sp_search_opts *o = s->o;
    for (int i = 0; i < o->offspring; i++) {
        uint8_t *c = g->genomes + (size_t)i * (size_t)n;
        if (!sp_sgenome_mutate(s->space, s->parent, o->target_bits, (sp_sgroups)o->ev.group_by,
                               &s->rng, c))
            break;
        g->cand[nc++] = c;
    }
    SP_RETURN_IF(nc == 0, err, SP_EINVAL, "search: no mutation of the parent fits --target-bits "
                 "%.6f with --groups as given (try --groups none)", o->target_bits);
    uint8_t *parent_copy = g->genomes + (size_t)(o->offspring + o->init_candidates + 1) * (size_t)n;
    memcpy(parent_copy, s->parent, (size_t)n);
    for (int st = 0; st < o->n_stages; st++) {
        int last = st == o->n_stages - 1;
        if (last) g->cand[nc++] = parent_copy; /* the parent competes in the last stage */
        SP_FORWARD(score(s, g, gen, st, nc, parent_copy, h, err));
        rank_by_fitness(g->fit, nc, g->order);
        int keep = o->survivors[st] < nc ? o->survivors[st] : nc;
        const uint8_t *kept[256 + 1];
        const uint8_t **tmp = keep <= 256 ? kept : NULL;
        SP_RETURN_IF(!tmp, err, SP_EINVAL, "search: --survivors above 256");
        double bestf = g->fit[g->order[0]];
        for (int i = 0; i < keep; i++) tmp[i] = g->cand[g->order[i]];
        for (int i = 0; i < keep; i++) g->cand[i] = tmp[i];
        nc = keep;
        if (last) {
            h->accepted = g->cand[0] != parent_copy &&
                          memcmp(g->cand[0], parent_copy, (size_t)n) != 0;
            memcpy(s->parent, g->cand[0], (size_t)n);
            h->fitness = bestf;
        }
    }
    return SP_OK;
}

static void progress(const sp_search_state *s, const sp_search_hist *h, double t0, int g0) {
    if (s->rank != 0) return;
    FILE *f = s->o->progress_to_stderr ? stderr : stdout;
    double el = now_s() - t0;
    int done = s->gen - g0, left = s->o->generations - s->gen;
    double eta = done > 0 ? el / done * left : 0.0;
    fprintf(f, "gen %4d/%d  KL %.6f  %-8s  layer evals %lld (full re-runs %lld)  %.2f s/gen  "
               "ETA %.0f s\n", s->gen, s->o->generations, h->fitness,
            h->accepted ? "accepted" : "kept", (long long)h->evals, (long long)h->full,
            done > 0 ? el / done : 0.0, eta);
    fflush(f);
}

static int stop_requested(const sp_search_state *s) {
    int mine = s->o->stop_flag && *s->o->stop_flag ? 1 : 0, any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, s->comm);
    return any;
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
    double *gerr = NULL;
    sp_status st = sp_mpi_agree(comm, check_opts(o, err), err);
    if (st == SP_OK) st = sp_seval_open(&s.ev, comm, &o->ev, err);
    if (st) return st;
    s.space = sp_seval_space(s.ev);
    int ctx = sp_seval_ctx(s.ev), pool = sp_seval_pool(s.ev);
    res->ctx = ctx;
    res->pool_windows = pool;
    res->n_levels = s.space->n_levels;
    for (int k = 0; k < s.space->n_levels; k++) {
        res->levels[k] = s.space->levels[k];
        res->uniform_avg[k] = sp_sgenome_uniform_avg(s.space, k);
    }
    /* Stage sizes in windows; the first must fit in the text, later ones are capped. */
    for (int i = 0; i < o->n_stages; i++) {
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
    st = sp_mpi_agree(comm, st, err);

    int found = 0;
    char warn[2048] = "";
    if (st == SP_OK && resume) st = sp_search_restore(&s, &found, warn, sizeof warn, err);
    if (st == SP_OK && s.rank == 0 && warn[0]) fprintf(stderr, "%s", warn);
    if (st == SP_OK && !found) {
        if (o->method == SP_SEARCH_GREEDY || o->init_greedy) {
            size_t ne = (size_t)s.space->n * (size_t)s.space->n_levels;
            gerr = sp_calloc(ne, sizeof *gerr, err, "error model");
            st = sp_mpi_agree(comm, gerr ? SP_OK : SP_ENOMEM, err);
            if (st == SP_OK) {
                draw_windows(&s, -2, 0, g.win, g.idx);
                st = sp_seval_layer_errors(s.ev, g.win, s.stage_windows[0], gerr, err);
            }
        }
        if (st == SP_OK) st = sp_mpi_agree(comm, initial_parent(&s, &g, gerr, err), err);
        s.rng = sp_sgenome_seed(o->seed, 11);
        if (st == SP_OK && o->checkpoint_dir && s.rank == 0) st = sp_search_write_run(&s, err);
        st = sp_mpi_agree(comm, st, err);
    }
    int g0 = s.gen, stopped = 0;
    res->start_generation = g0;
    int gens = o->method == SP_SEARCH_GREEDY ? 0 : o->generations;
    while (st == SP_OK && s.gen < gens) {
        sp_search_hist h = {0};
        st = generation(&s, &g, &h, err);
        if (st) break;
        s.hist[s.gen] = h;
        s.n_hist = s.gen + 1;
        s.gen++;
        s.evals += h.evals;
        s.full += h.full;
        s.accepted += h.accepted;
        s.parent_fitness = h.fitness;
        progress(&s, &h, t0, g0);
        int stop = stop_requested(&s);
        if (o->checkpoint_dir && (s.gen < gens || stop)) st = sp_search_checkpoint(&s, err);
        if (st == SP_OK && stop && s.gen < gens) {
            stopped = 1;
            break;
        }
    }
    /* The final map's fitness on a last-stage draw when no generation measured it. */
    if (st == SP_OK && !stopped && s.n_hist == 0) {
        sp_search_hist h = {0};
        g.cand[0] = s.parent;
        st = score(&s, &g, gens, o->n_stages - 1, 1, s.parent, &h, err);
        s.parent_fitness = g.fit[0];
        s.evals += h.evals;
        s.full += h.full;
    }
    if (st == SP_OK && stopped)
        st = sp_err_set(err, SP_EINTERRUPTED, o->checkpoint_dir
                        ? "stopped by a signal after generation %d of %d; checkpoint written, "
                          "continue with: shardpress resume %s"
                        : "stopped by a signal after generation %d of %d (no --checkpoint-dir%s: "
                          "nothing saved)", s.gen, gens, o->checkpoint_dir ? o->checkpoint_dir : "");
    if (st == SP_OK && s.rank == 0) st = sp_search_write_outputs(&s, err);
    st = sp_mpi_agree(comm, st, err);
    res->target_bits = o->target_bits;
    res->avg_bits = s.parent ? sp_sgenome_avg(s.space, s.parent) : 0;
    res->fitness_kl = s.parent_fitness;
    res->generations = s.gen;
    res->accepted = s.accepted;
    res->uniform_start = s.uniform_start;
    res->layer_evals = s.evals;
    res->layer_evals_full = s.full;
    res->ranks = s.size;
    res->checkpoints = s.checkpoints;
    res->seconds = now_s() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double mine = (double)ru.ru_maxrss / 1024.0;
    MPI_Allreduce(&mine, &res->peak_rss_mb_max, 1, MPI_DOUBLE, MPI_MAX, comm);
    free(gerr);
    scratch_free(&g);
    free(s.parent);
    free(s.hist);
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
