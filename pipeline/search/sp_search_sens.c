/* sp_search_sens.c — the ΔKL sensitivity table of `search` (--method sensitivity, --init
 * sensitivity, --sensitivity FILE): measured once per run by sp_seval_sensitivity, saved as
 * MAP.sensitivity.json, and read back by a later search of the same container and dense model.
 *
 * MAP.sensitivity.json (rank 0, tmp + rename):
 *   {"format": "shardpress-sensitivity", "version": 1,
 *    "model": QDIR (absolute), "container_bytes", "dense_fingerprint", "calib_fingerprint",
 *    "ctx", "topk", "seed", "windows": [pool indices], "tokens": scored tokens,
 *    "levels": [bits], "modules": [HF names],
 *    "table": [[ΔKL at each level] per module] (doubles printed to round-trip exactly),
 *    "layer_evaluations", "layer_evaluations_full", "seconds"}
 * A table is reused only for the same levels, modules, container size and dense model; another
 * calibration text or ctx is allowed (the table is then a measurement on other text) and said
 * on stderr. */
#include "pipeline/search/sp_search_int.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mpi/sp_mpi.h"
#include "pipeline/quantize/sp_qrun.h"

static long long container_bytes(const char *qdir) {
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/model.sp.h5", qdir);
    struct stat sb;
    return stat(p, &sb) == 0 ? (long long)sb.st_size : -1;
}

sp_status sp_search_sens_save(const sp_search_state *s, const char *path, const int *win, int nw,
                              sp_err *err) {
    const sp_search_opts *o = s->o;
    const sp_sgenome_space *sp = s->space;
    char q[PATH_MAX];
    SP_RETURN_IF(!realpath(o->ev.qdir, q), err, SP_EIO, "%s: %s", o->ev.qdir, strerror(errno));
    uint32_t cfp = 0;
    SP_FORWARD(sp_qrun_file_fingerprint(o->ev.calib_path, &cfp, err));
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "shardpress-sensitivity");
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddStringToObject(j, "model", q);
    cJSON_AddNumberToObject(j, "container_bytes", (double)container_bytes(o->ev.qdir));
    cJSON_AddNumberToObject(j, "dense_fingerprint", sp_seval_dense_fingerprint(s->ev));
    cJSON_AddNumberToObject(j, "calib_fingerprint", cfp);
    cJSON_AddNumberToObject(j, "ctx", sp_seval_ctx(s->ev));
    cJSON_AddNumberToObject(j, "topk", o->ev.topk);
    char num[32];
    snprintf(num, sizeof num, "%llu", (unsigned long long)o->seed);
    cJSON_AddStringToObject(j, "seed", num);
    cJSON *w = cJSON_AddArrayToObject(j, "windows");
    for (int i = 0; i < nw; i++) cJSON_AddItemToArray(w, cJSON_CreateNumber(win[i]));
    cJSON_AddNumberToObject(j, "tokens", (double)nw * (double)(sp_seval_ctx(s->ev) - 1));
    cJSON *lv = cJSON_AddArrayToObject(j, "levels");
    for (int k = 0; k < sp->n_levels; k++) cJSON_AddItemToArray(lv, cJSON_CreateNumber(sp->levels[k]));
    cJSON *mo = cJSON_AddArrayToObject(j, "modules"), *t = cJSON_AddArrayToObject(j, "table");
    for (int m = 0; m < sp->n; m++) {
        char name[128];
        sp_seval_module_name(m, name, sizeof name);
        cJSON_AddItemToArray(mo, cJSON_CreateString(name));
        cJSON *row = cJSON_CreateArray();
        for (int k = 0; k < sp->n_levels; k++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber(s->table[(size_t)m * (size_t)sp->n_levels + (size_t)k]));
        cJSON_AddItemToArray(t, row);
    }
    cJSON_AddNumberToObject(j, "layer_evaluations", (double)s->sens_evals);
    cJSON_AddNumberToObject(j, "layer_evaluations_full", (double)s->sens_full);
    cJSON_AddNumberToObject(j, "seconds", s->sens_seconds);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    SP_RETURN_IF(!text, err, SP_ENOMEM, "%s: out of memory", path);
    sp_status st = sp_qrun_write_file(path, text, err);
    free(text);
    return st;
}

/* Rank 0: parse and check the file against this run; fills s->table. */
static sp_status load_root(sp_search_state *s, const char *path, sp_err *err) {
    const sp_sgenome_space *sp = s->space;
    char *text = NULL;
    SP_FORWARD(sp_qrun_read_file(path, &text, err));
    cJSON *j = cJSON_Parse(text);
    free(text);
    sp_status st = SP_OK;
#define BAD(...) do { if (st == SP_OK) st = sp_err_set(err, SP_EFORMAT, __VA_ARGS__); } while (0)
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "format");
    if (!cJSON_IsString(f) || strcmp(f->valuestring, "shardpress-sensitivity") != 0)
        BAD("%s: field 'format' is not \"shardpress-sensitivity\" (not a table written by search)", path);
    const cJSON *lv = cJSON_GetObjectItemCaseSensitive(j, "levels");
    int ok = cJSON_IsArray(lv) && cJSON_GetArraySize(lv) == sp->n_levels;
    for (int k = 0; ok && k < sp->n_levels; k++) {
        const cJSON *x = cJSON_GetArrayItem(lv, k);
        ok = cJSON_IsNumber(x) && x->valueint == sp->levels[k];
    }
    if (!ok) BAD("%s: field 'levels' differs from the container's levels", path);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "table");
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(j, "modules");
    if (!cJSON_IsArray(t) || cJSON_GetArraySize(t) != sp->n || !cJSON_IsArray(mo) ||
        cJSON_GetArraySize(mo) != sp->n)
        BAD("%s: fields 'table' and 'modules' must have one entry per module (%d)", path, sp->n);
    for (int m = 0; st == SP_OK && m < sp->n; m++) {
        char name[128];
        sp_seval_module_name(m, name, sizeof name);
        const cJSON *nm = cJSON_GetArrayItem(mo, m), *row = cJSON_GetArrayItem(t, m);
        if (!cJSON_IsString(nm) || strcmp(nm->valuestring, name) != 0)
            BAD("%s: field 'modules' entry %d is not %s", path, m, name);
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != sp->n_levels)
            BAD("%s: field 'table' entry %d must have %d values", path, m, sp->n_levels);
        for (int k = 0; st == SP_OK && k < sp->n_levels; k++) {
            const cJSON *x = cJSON_GetArrayItem(row, k);
            /* a ΔKL: the writer stores small negatives (a near-lossless level measured on
             * finite windows, e.g. Q8_0 at −2e-10), so any finite value is one */
            if (!cJSON_IsNumber(x) || !(fabs(x->valuedouble) <= 1e30))
                BAD("%s: field 'table' entry %d, level %d: not a KL value", path, m, sp->levels[k]);
            else
                s->table[(size_t)m * (size_t)sp->n_levels + (size_t)k] = x->valuedouble;
        }
    }
    const cJSON *df = cJSON_GetObjectItemCaseSensitive(j, "dense_fingerprint");
    const cJSON *cb = cJSON_GetObjectItemCaseSensitive(j, "container_bytes");
    if (!cJSON_IsNumber(df) || df->valuedouble != (double)sp_seval_dense_fingerprint(s->ev))
        BAD("%s: field 'dense_fingerprint' is not the dense model's (0x%08x): measured on "
            "another model", path, sp_seval_dense_fingerprint(s->ev));
    if (!cJSON_IsNumber(cb) || cb->valuedouble != (double)container_bytes(s->o->ev.qdir))
        BAD("%s: field 'container_bytes' does not match %s/model.sp.h5: measured on another "
            "quantization", path, s->o->ev.qdir);
#undef BAD
    /* what measuring it cost (0 in a checkpoint copy of a table the run was given) */
    const cJSON *le = cJSON_GetObjectItemCaseSensitive(j, "layer_evaluations");
    const cJSON *lf = cJSON_GetObjectItemCaseSensitive(j, "layer_evaluations_full");
    s->sens_evals = cJSON_IsNumber(le) && le->valuedouble >= 0 ? (int64_t)le->valuedouble : 0;
    s->sens_full = cJSON_IsNumber(lf) && lf->valuedouble >= 0 ? (int64_t)lf->valuedouble : 0;
    const cJSON *cf = cJSON_GetObjectItemCaseSensitive(j, "calib_fingerprint");
    const cJSON *cx = cJSON_GetObjectItemCaseSensitive(j, "ctx");
    uint32_t fp = 0;
    if (st == SP_OK && sp_qrun_file_fingerprint(s->o->ev.calib_path, &fp, err) == SP_OK &&
        (!cJSON_IsNumber(cf) || cf->valuedouble != (double)fp || !cJSON_IsNumber(cx) ||
         cx->valueint != sp_seval_ctx(s->ev)))
        fprintf(stderr, "search: note: %s was measured on another calibration text or --ctx; "
                        "using it as given\n", path);
    cJSON_Delete(j);
    return st;
}

sp_status sp_search_sens_load(sp_search_state *s, const char *path, sp_err *err) {
    sp_status st = s->rank == 0 ? load_root(s, path, err) : SP_OK;
    st = sp_mpi_agree(s->comm, st, err);
    if (st == SP_OK) {
        MPI_Bcast(s->table, s->space->n * s->space->n_levels, MPI_DOUBLE, 0, s->comm);
        int64_t c[2] = {s->sens_evals, s->sens_full};
        MPI_Bcast(c, 2, MPI_INT64_T, 0, s->comm);
        s->sens_evals = c[0];
        s->sens_full = c[1];
    }
    return st;
}
