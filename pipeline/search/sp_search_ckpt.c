/* sp_search_ckpt.c — what makes a search resumable.
 *
 *   D/search.json   written once when a checkpointed search starts (rank 0, tmp + rename): the
 *                   options with absolute paths, and fingerprints of the inputs (the dense
 *                   model as in sp_qrun.h, the calibration text's CRC-32, the container's size).
 *   checkpoints     one per generation through ckpt/ (parallel HDF5, CRC-checked, `latest`):
 *                   root attribute "state" (JSON: generation, RNG state, counters, history
 *                   with doubles printed exactly) and dataset "parent" uint8 [modules].
 * The state is a few KiB, so each checkpoint starts an engine, writes, and stops it again: the
 * container stays readable from the main thread between checkpoints (Debian's HDF5 is not
 * thread-safe, and the engine's I/O thread owns HDF5 while it lives).
 */
#include "pipeline/search/sp_search_int.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/sp_ckpt.h"
#include "mpi/sp_mpi.h"
#include "pipeline/quantize/sp_qrun.h"
#include "pipeline/sp_outdir.h"

static long long container_size(const char *qdir) {
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/model.sp.h5", qdir);
    struct stat sb;
    return stat(p, &sb) == 0 ? (long long)sb.st_size : -1;
}

static sp_status abs_path(const char *p, char *out, sp_err *err) {
    SP_RETURN_IF(!realpath(p, out), err, SP_EIO, "%s: %s", p, strerror(errno));
    return SP_OK;
}

sp_status sp_search_write_run(const sp_search_state *s, sp_err *err) {
    const sp_search_opts *o = s->o;
    char q[PATH_MAX], c[PATH_MAX], d[PATH_MAX], out[PATH_MAX + 256], dir[PATH_MAX];
    SP_FORWARD(abs_path(o->ev.qdir, q, err));
    SP_FORWARD(abs_path(o->ev.calib_path, c, err));
    SP_FORWARD(abs_path(sp_seval_dense_dir(s->ev), d, err));
    SP_FORWARD(sp_outdir_mkdirs(o->checkpoint_dir, "checkpoint directory", err));
    SP_FORWARD(abs_path(o->checkpoint_dir, dir, err));
    /* --out may not exist yet: make its directory absolute. */
    if (o->out_map[0] == '/') snprintf(out, sizeof out, "%s", o->out_map);
    else {
        char cwd[PATH_MAX];
        SP_RETURN_IF(!getcwd(cwd, sizeof cwd), err, SP_EIO, "getcwd: %s", strerror(errno));
        snprintf(out, sizeof out, "%s/%s", cwd, o->out_map);
    }
    uint32_t cfp = 0;
    SP_FORWARD(sp_qrun_file_fingerprint(o->ev.calib_path, &cfp, err));
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "shardpress-search");
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddStringToObject(j, "model", q);
    cJSON_AddStringToObject(j, "dense", d);
    cJSON_AddStringToObject(j, "calib", c);
    cJSON_AddStringToObject(j, "out", out);
    char num[64];
    snprintf(num, sizeof num, "%.17g", o->target_bits);
    cJSON_AddStringToObject(j, "target_bits", num);
    cJSON_AddStringToObject(j, "method", sp_search_method_name(o->method));
    cJSON_AddNumberToObject(j, "generations", o->generations);
    cJSON_AddNumberToObject(j, "offspring", o->offspring);
    cJSON *st = cJSON_AddArrayToObject(j, "stages"), *sv = cJSON_AddArrayToObject(j, "survivors");
    for (int i = 0; i < o->n_stages; i++) {
        cJSON_AddItemToArray(st, cJSON_CreateNumber(o->stages[i]));
        cJSON_AddItemToArray(sv, cJSON_CreateNumber(o->survivors[i]));
    }
    cJSON_AddNumberToObject(j, "ctx", sp_seval_ctx(s->ev));
    cJSON_AddNumberToObject(j, "topk", o->ev.topk);
    cJSON_AddNumberToObject(j, "groups", o->ev.group_by);
    cJSON_AddNumberToObject(j, "init", o->init);
    cJSON_AddNumberToObject(j, "init_candidates", o->init_candidates);
    if (o->ev.gguf_costs) cJSON_AddBoolToObject(j, "gguf_costs", 1); /* --match-gguf */
    cJSON_AddNumberToObject(j, "screen", o->screen);
    snprintf(num, sizeof num, "%lld", (long long)o->max_evals);
    cJSON_AddStringToObject(j, "max_evals", num);
    cJSON_AddNumberToObject(j, "sensitivity_tokens", o->sensitivity_tokens);
    snprintf(num, sizeof num, "%llu", (unsigned long long)o->seed);
    cJSON_AddStringToObject(j, "seed", num);
    cJSON_AddNumberToObject(j, "dense_fingerprint", sp_seval_dense_fingerprint(s->ev));
    cJSON_AddNumberToObject(j, "calib_fingerprint", cfp);
    cJSON_AddNumberToObject(j, "container_bytes", (double)container_size(o->ev.qdir));
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    SP_RETURN_IF(!text, err, SP_ENOMEM, "search.json: out of memory");
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/search.json", dir);
    sp_status r = sp_qrun_write_file(path, text, err);
    free(text);
    return r;
}

int sp_search_is_checkpoint_dir(const char *dir) {
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/search.json", dir);
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* ---- checkpoints ------------------------------------------------------------------------ */

static char *state_json(const sp_search_state *s) {
    cJSON *j = cJSON_CreateObject();
    char num[64];
    cJSON_AddNumberToObject(j, "generation", s->gen);
    snprintf(num, sizeof num, "%llu", (unsigned long long)s->rng);
    cJSON_AddStringToObject(j, "rng", num);
    snprintf(num, sizeof num, "%.17g", s->parent_fitness);
    cJSON_AddStringToObject(j, "parent_fitness", num);
    snprintf(num, sizeof num, "%lld", (long long)s->evals);
    cJSON_AddStringToObject(j, "evals", num);
    snprintf(num, sizeof num, "%lld", (long long)s->full);
    cJSON_AddStringToObject(j, "full", num);
    cJSON_AddNumberToObject(j, "accepted", s->accepted);
    cJSON_AddNumberToObject(j, "uniform_start", s->uniform_start);
    snprintf(num, sizeof num, "%lld", (long long)s->n_obs);
    cJSON_AddStringToObject(j, "observations", num);
    cJSON_AddNumberToObject(j, "draws", s->n_draws);
    cJSON *h = cJSON_AddArrayToObject(j, "history");
    for (int g = 0; g < s->n_hist; g++) {
        char line[200];
        snprintf(line, sizeof line, "%.17g %d %lld %lld %.17g %.17g", s->hist[g].fitness,
                 s->hist[g].accepted, (long long)s->hist[g].evals, (long long)s->hist[g].full,
                 s->hist[g].predicted, s->hist[g].rho);
        cJSON_AddItemToArray(h, cJSON_CreateString(line));
    }
    char *t = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return t;
}

static sp_status state_parse(sp_search_state *s, const char *text, const char *file, sp_err *err) {
    cJSON *j = cJSON_Parse(text);
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(j, "generation");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "rng");
    const cJSON *pf = cJSON_GetObjectItemCaseSensitive(j, "parent_fitness");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "evals");
    const cJSON *fu = cJSON_GetObjectItemCaseSensitive(j, "full");
    const cJSON *ac = cJSON_GetObjectItemCaseSensitive(j, "accepted");
    const cJSON *us = cJSON_GetObjectItemCaseSensitive(j, "uniform_start");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "history");
    const cJSON *no = cJSON_GetObjectItemCaseSensitive(j, "observations");
    const cJSON *nd = cJSON_GetObjectItemCaseSensitive(j, "draws");
    sp_status st = SP_OK;
    if (!cJSON_IsNumber(g) || !cJSON_IsString(r) || !cJSON_IsString(pf) || !cJSON_IsString(ev) ||
        !cJSON_IsString(fu) || !cJSON_IsNumber(ac) || !cJSON_IsNumber(us) || !cJSON_IsArray(h) ||
        !cJSON_IsString(no) || !cJSON_IsNumber(nd) || strtoll(no->valuestring, NULL, 10) < 0 ||
        (strtoll(no->valuestring, NULL, 10) > 0) != s->sur_on ||
        g->valueint < 0 || g->valueint > s->o->generations ||
        cJSON_GetArraySize(h) != g->valueint) {
        st = sp_err_set(err, SP_EFORMAT, "%s: attribute 'state' is not a search state of this run", file);
    } else {
        s->gen = g->valueint;
        s->rng = strtoull(r->valuestring, NULL, 10);
        s->parent_fitness = strtod(pf->valuestring, NULL);
        s->evals = strtoll(ev->valuestring, NULL, 10);
        s->full = strtoll(fu->valuestring, NULL, 10);
        s->accepted = ac->valueint;
        s->uniform_start = us->valueint;
        s->n_obs = strtoll(no->valuestring, NULL, 10); /* rows of obs_* (read by the caller) */
        s->n_draws = nd->valueint;
        s->n_hist = s->gen;
        for (int i = 0; i < s->gen && st == SP_OK; i++) {
            const cJSON *e = cJSON_GetArrayItem(h, i);
            long long a = 0, b = 0;
            int acc = 0;
            if (!cJSON_IsString(e) || sscanf(e->valuestring, "%lf %d %lld %lld %lf %lf",
                                             &s->hist[i].fitness, &acc, &a, &b,
                                             &s->hist[i].predicted, &s->hist[i].rho) != 6)
                st = sp_err_set(err, SP_EFORMAT, "%s: state: history entry %d is malformed", file, i);
            s->hist[i].accepted = acc;
            s->hist[i].evals = a;
            s->hist[i].full = b;
        }
    }
    cJSON_Delete(j);
    return st;
}

sp_status sp_search_checkpoint(sp_search_state *s, sp_err *err) {
    sp_ckpt *ck = NULL;
    SP_FORWARD(sp_ckpt_create(&ck, s->comm, s->o->checkpoint_dir, NULL, err));
    char *state = state_json(s);
    sp_status st = state ? SP_OK : sp_err_set(err, SP_ENOMEM, "search state: out of memory");
    int64_t n = s->space->n;
    if (st == SP_OK) st = sp_ckpt_begin(ck, s->gen, err);
    if (st == SP_OK) st = sp_ckpt_put_attr_str(ck, "state", state, err);
    if (st == SP_OK)
        st = sp_ckpt_put_rows(ck, "parent", SP_CKPT_U8, 1, &n, 0, s->rank == 0 ? n : 0,
                              s->rank == 0 ? s->parent : NULL, err);
    /* the surrogate's data: replayed on resume, it refits to the same bits */
    int64_t shp[2] = {s->n_obs, n}, mine = s->rank == 0 ? s->n_obs : 0;
    if (st == SP_OK && s->n_obs > 0)
        st = sp_ckpt_put_rows(ck, "obs_g", SP_CKPT_U8, 2, shp, 0, mine, s->obs_g, err);
    if (st == SP_OK && s->n_obs > 0)
        st = sp_ckpt_put_rows(ck, "obs_y", SP_CKPT_F64, 1, shp, 0, mine, s->obs_y, err);
    if (st == SP_OK && s->n_obs > 0)
        st = sp_ckpt_put_rows(ck, "obs_draw", SP_CKPT_I32, 1, shp, 0, mine, s->obs_draw, err);
    sp_status c = sp_ckpt_commit(ck, err); /* always: keeps every rank's I/O thread in step */
    if (st == SP_OK) st = c;
    sp_status d = sp_ckpt_destroy(ck, err);
    if (st == SP_OK) st = d;
    free(state);
    st = sp_mpi_agree(s->comm, st, err);
    if (st == SP_OK) s->checkpoints++;
    return st;
}

/* The surrogate's observations from checkpoint r (s->n_obs rows), replayed draw by draw. */
static sp_status restore_obs(sp_search_state *s, sp_ckpt_reader *r, sp_err *err) {
    int64_t no = s->n_obs, n = s->space->n;
    int32_t draws = s->n_draws;
    int ndim = 0;
    int64_t shape[4] = {0};
    SP_FORWARD(sp_ckpt_dataset_shape(r, "obs_g", &ndim, shape, err));
    SP_RETURN_IF(ndim != 2 || shape[0] != no || shape[1] != n, err, SP_EFORMAT,
                 "%s: dataset 'obs_g' is not [%lld, %lld]", sp_ckpt_reader_path(r),
                 (long long)no, (long long)n);
    uint8_t *g = sp_malloc((size_t)(no * n), err, "surrogate data");
    double *y = g ? sp_malloc((size_t)no * sizeof *y, err, "surrogate data") : NULL;
    int32_t *d = y ? sp_malloc((size_t)no * sizeof *d, err, "surrogate data") : NULL;
    const uint8_t **gp = d ? sp_malloc((size_t)no * sizeof *gp, err, "surrogate data") : NULL;
    sp_status st = gp ? SP_OK : SP_ENOMEM;
    if (st == SP_OK) st = sp_ckpt_read_rows(r, "obs_g", 0, no, g, err);
    if (st == SP_OK) st = sp_ckpt_read_rows(r, "obs_y", 0, no, y, err);
    if (st == SP_OK) st = sp_ckpt_read_rows(r, "obs_draw", 0, no, d, err);
    for (int64_t i = 0; st == SP_OK && i < no; i++) {
        gp[i] = g + i * n;
        if (d[i] < 0 || d[i] >= draws || (i > 0 && d[i] < d[i - 1]))
            st = sp_err_set(err, SP_EFORMAT, "%s: dataset 'obs_draw' is not ascending draw "
                            "numbers below %d", sp_ckpt_reader_path(r), draws);
        for (int64_t m = 0; st == SP_OK && m < n; m++)
            if (g[i * n + m] >= s->space->n_levels)
                st = sp_err_set(err, SP_EFORMAT, "%s: dataset 'obs_g': level index out of range",
                                sp_ckpt_reader_path(r));
    }
    s->n_obs = 0;
    s->n_draws = 0;
    for (int64_t i = 0; st == SP_OK && i < no;) {
        int64_t j = i;
        while (j < no && d[j] == d[i]) j++;
        if (st == SP_OK) st = sp_search_observe(s, gp + i, y + i, (int)(j - i), err);
        i = j;
    }
    s->n_draws = draws;
    if (st == SP_OK) st = sp_ssurrogate_fit(&s->sur, err);
    free(g);
    free(y);
    free(d);
    free(gp);
    return st;
}

sp_status sp_search_restore(sp_search_state *s, int *found, char *warn, size_t cap, sp_err *err) {
    *found = 0;
    sp_ckpt *ck = NULL;
    SP_FORWARD(sp_ckpt_create(&ck, s->comm, s->o->checkpoint_dir, NULL, err));
    sp_ckpt_reader *r = NULL;
    sp_status st = sp_ckpt_open_latest(ck, &r, warn, cap, err);
    if (st == SP_ENOTFOUND) {
        st = SP_OK;
    } else if (st == SP_OK) {
        char *state = NULL;
        int ndim = 0;
        int64_t shape[4] = {0};
        st = sp_ckpt_get_attr_str(r, "state", &state, err);
        if (st == SP_OK) st = state_parse(s, state, sp_ckpt_reader_path(r), err);
        if (st == SP_OK) st = sp_ckpt_dataset_shape(r, "parent", &ndim, shape, err);
        if (st == SP_OK && (ndim != 1 || shape[0] != s->space->n))
            st = sp_err_set(err, SP_EFORMAT, "%s: dataset 'parent' has %lld entries, the "
                            "container has %d modules", sp_ckpt_reader_path(r),
                            (long long)shape[0], s->space->n);
        if (st == SP_OK) st = sp_ckpt_read_rows(r, "parent", 0, s->space->n, s->parent, err);
        if (st == SP_OK && s->n_obs > 0) st = restore_obs(s, r, err);
        for (int m = 0; st == SP_OK && m < s->space->n; m++)
            if (s->parent[m] >= s->space->n_levels)
                st = sp_err_set(err, SP_EFORMAT, "%s: dataset 'parent': level index %d out of "
                                "range", sp_ckpt_reader_path(r), s->parent[m]);
        free(state);
        sp_ckpt_reader_close(r);
        *found = st == SP_OK;
    }
    sp_status d = sp_ckpt_destroy(ck, err);
    if (st == SP_OK) st = d;
    return sp_mpi_agree(s->comm, st, err);
}

/* ---- resume ------------------------------------------------------------------------------ */

sp_status sp_search_job_resume(MPI_Comm comm, const sp_search_opts *o, sp_search_result *res,
                               sp_err *err);

static const char *jstr(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
static int jnum(const cJSON *j, const char *k, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    if (!cJSON_IsNumber(v)) return 0;
    *out = v->valuedouble;
    return 1;
}
static int jint(const cJSON *j, const char *k, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    if (!cJSON_IsNumber(v)) return 0;
    *out = v->valueint;
    return 1;
}

sp_status sp_search_resume(MPI_Comm comm, const char *dir, volatile sig_atomic_t *stop_flag,
                           sp_search_result *res, sp_err *err) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    memset(res, 0, sizeof *res);
    char path[PATH_MAX + 32], *text = NULL;
    snprintf(path, sizeof path, "%s/search.json", dir);
    long n = 0;
    sp_status st = SP_OK;
    if (rank == 0) {
        st = sp_qrun_read_file(path, &text, err);
        n = text ? (long)strlen(text) : 0;
    }
    st = sp_mpi_agree(comm, st, err);
    if (st) return st;
    MPI_Bcast(&n, 1, MPI_LONG, 0, comm);
    if (rank != 0) text = sp_calloc((size_t)n + 1, 1, err, "search.json");
    st = sp_mpi_agree(comm, text ? SP_OK : SP_ENOMEM, err);
    if (st) return st;
    MPI_Bcast(text, (int)n + 1, MPI_CHAR, 0, comm);
    cJSON *j = cJSON_Parse(text);
    free(text);
    sp_search_opts o;
    sp_search_defaults(&o);
    const char *fmt = jstr(j, "format"), *tb = jstr(j, "target_bits"), *me = jstr(j, "method");
    const char *seed = jstr(j, "seed"), *mx = jstr(j, "max_evals");
    const cJSON *stg = cJSON_GetObjectItemCaseSensitive(j, "stages");
    const cJSON *sur = cJSON_GetObjectItemCaseSensitive(j, "survivors");
    double dfp = 0, cfp = 0, cbytes = 0;
    int init = 0;
    int ok = fmt && !strcmp(fmt, "shardpress-search") && tb && me && seed;
    o.ev.qdir = jstr(j, "model");
    o.ev.dense_dir = jstr(j, "dense");
    o.ev.calib_path = jstr(j, "calib");
    o.out_map = jstr(j, "out");
    ok = ok && o.ev.qdir && o.ev.dense_dir && o.ev.calib_path && o.out_map;
    ok = ok && jint(j, "generations", &o.generations) && jint(j, "offspring", &o.offspring) &&
         jint(j, "init", &init) && init >= 0 && init <= 1 && jint(j, "ctx", &o.ev.ctx) && jint(j, "topk", &o.ev.topk) && jint(j, "groups", &o.ev.group_by) &&
         jint(j, "init_candidates", &o.init_candidates) && jint(j, "screen", &o.screen) &&
         o.screen >= 1 && mx && jint(j, "sensitivity_tokens", &o.sensitivity_tokens) && jnum(j, "dense_fingerprint", &dfp) &&
         jnum(j, "calib_fingerprint", &cfp) && jnum(j, "container_bytes", &cbytes);
    ok = ok && cJSON_IsArray(stg) && cJSON_IsArray(sur) &&
         cJSON_GetArraySize(stg) == cJSON_GetArraySize(sur) &&
         cJSON_GetArraySize(stg) >= 1 && cJSON_GetArraySize(stg) <= SP_SEARCH_MAX_STAGES;
    if (ok) {
        o.target_bits = strtod(tb, NULL);
        o.method = !strcmp(me, "sensitivity") ? SP_SEARCH_SENSITIVITY : SP_SEARCH_EVO;
        o.init = (sp_search_init)init;
        o.seed = strtoull(seed, NULL, 10);
        o.ev.gguf_costs = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "gguf_costs"));
        o.max_evals = strtoll(mx, NULL, 10);
        o.n_stages = cJSON_GetArraySize(stg);
        for (int i = 0; i < o.n_stages; i++) {
            o.stages[i] = cJSON_GetArrayItem(stg, i)->valueint;
            o.survivors[i] = cJSON_GetArrayItem(sur, i)->valueint;
        }
    }
    o.checkpoint_dir = dir;
    o.stop_flag = stop_flag;
    if (!ok) st = sp_err_set(err, SP_EFORMAT, "%s: not a search.json written by shardpress search", path);
    /* The inputs must be the ones the checkpoints were made from. */
    uint32_t fp = 0;
    if (st == SP_OK) st = sp_qrun_file_fingerprint(o.ev.calib_path, &fp, err);
    if (st == SP_OK && (double)fp != cfp)
        st = sp_err_set(err, SP_EINVAL, "%s: changed since the search started (fingerprint "
                        "0x%08x, search.json has 0x%08x)", o.ev.calib_path, fp, (unsigned)cfp);
    if (st == SP_OK) st = sp_qrun_model_fingerprint(o.ev.dense_dir, &fp, err);
    if (st == SP_OK && (double)fp != dfp)
        st = sp_err_set(err, SP_EINVAL, "%s: the dense model changed since the search started",
                        o.ev.dense_dir);
    if (st == SP_OK && (double)container_size(o.ev.qdir) != cbytes)
        st = sp_err_set(err, SP_EINVAL, "%s/model.sp.h5: changed since the search started",
                        o.ev.qdir);
    st = sp_mpi_agree(comm, st, err);
    if (st == SP_OK) st = sp_search_job_resume(comm, &o, res, err);
    cJSON_Delete(j);
    return st;
}
