/* sp_xstate.c — the exchange state D through ckpt/: root attribute "state" (JSON: format,
 * round, compressor, downlink, weights, lr, sites, site0, jobsites, layout, next_base) and the
 * datasets g_sites f32 [jobsites, P] (row r: the g_i of site site0 + r), and on the server's
 * job g f32 [P], x f32 [P] (with a downlink) and w f64 [sites]. */
#include "pipeline/exchange/sp_xint.h"
#include "pipeline/exchange/sp_exchange.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *meta_json(const sp_xstate_meta *m) {
    cJSON *j = cJSON_CreateObject();
    char num[32];
    cJSON_AddStringToObject(j, "format", "shardpress-exchange");
    cJSON_AddNumberToObject(j, "version", 1);
    snprintf(num, sizeof num, "%lld", (long long)m->round);
    cJSON_AddStringToObject(j, "round", num);
    cJSON_AddStringToObject(j, "compressor", m->compressor);
    cJSON_AddStringToObject(j, "downlink", m->downlink);
    cJSON_AddStringToObject(j, "weights", m->weights);
    cJSON_AddStringToObject(j, "lr", m->lr);
    cJSON_AddNumberToObject(j, "sites", m->sites);
    cJSON_AddNumberToObject(j, "site0", m->site0);
    cJSON_AddNumberToObject(j, "jobsites", m->jobsites);
    cJSON_AddNumberToObject(j, "layout", m->layout);
    cJSON_AddNumberToObject(j, "next_base", m->next_base);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static sp_status get_str(const cJSON *j, const char *k, char *dst, size_t cap, const char *path,
                         sp_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    SP_RETURN_IF(!cJSON_IsString(v) || strlen(v->valuestring) >= cap, err, SP_EFORMAT,
                 "%s: state field '%s' missing or not a string", path, k);
    snprintf(dst, cap, "%s", v->valuestring);
    return SP_OK;
}

static sp_status get_num(const cJSON *j, const char *k, double *dst, const char *path, sp_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    SP_RETURN_IF(!cJSON_IsNumber(v), err, SP_EFORMAT, "%s: state field '%s' missing or not a number",
                 path, k);
    *dst = v->valuedouble;
    return SP_OK;
}

static sp_status meta_parse(const char *text, const char *path, sp_xstate_meta *m, sp_err *err) {
    cJSON *j = cJSON_Parse(text);
    SP_RETURN_IF(!j, err, SP_EFORMAT, "%s: attribute 'state' is not JSON", path);
    char fmt[64] = "", round[32] = "";
    double sites = 0, site0 = 0, js = 0, layout = 0, nb = 0;
    sp_status st = get_str(j, "format", fmt, sizeof fmt, path, err);
    if (st == SP_OK && strcmp(fmt, "shardpress-exchange") != 0)
        st = sp_err_set(err, SP_EFORMAT, "%s: format '%s' is not an exchange state", path, fmt);
    if (st == SP_OK) st = get_str(j, "round", round, sizeof round, path, err);
    if (st == SP_OK) st = get_str(j, "compressor", m->compressor, sizeof m->compressor, path, err);
    if (st == SP_OK) st = get_str(j, "downlink", m->downlink, sizeof m->downlink, path, err);
    if (st == SP_OK) st = get_str(j, "weights", m->weights, sizeof m->weights, path, err);
    if (st == SP_OK) st = get_str(j, "lr", m->lr, sizeof m->lr, path, err);
    if (st == SP_OK) st = get_num(j, "sites", &sites, path, err);
    if (st == SP_OK) st = get_num(j, "site0", &site0, path, err);
    if (st == SP_OK) st = get_num(j, "jobsites", &js, path, err);
    if (st == SP_OK) st = get_num(j, "layout", &layout, path, err);
    if (st == SP_OK) st = get_num(j, "next_base", &nb, path, err);
    cJSON_Delete(j);
    SP_FORWARD(st);
    SP_RETURN_IF(sites < 1 || sites > SP_EXCHANGE_MAX_SITES || js < 1 || js > sites, err, SP_EFORMAT,
                 "%s: state field 'sites' %g / 'jobsites' %g out of range", path, sites, js);
    m->round = strtoll(round, NULL, 10);
    m->sites = (int)sites;
    m->site0 = (int)site0;
    m->jobsites = (int)js;
    m->layout = (uint32_t)layout;
    m->next_base = (uint32_t)nb;
    return SP_OK;
}

static sp_status read_vec(sp_ckpt_reader *r, const char *name, int64_t row, int64_t want_rows,
                          int64_t cols, void *buf, sp_err *err) {
    int nd;
    int64_t shape[4];
    SP_FORWARD(sp_ckpt_dataset_shape(r, name, &nd, shape, err));
    int ok = nd == (cols ? 2 : 1) && shape[0] == want_rows && (!cols || shape[1] == cols);
    SP_RETURN_IF(!ok, err, SP_EFORMAT, "%s: dataset '%s' has another shape than this model and "
                 "site count need", sp_ckpt_reader_path(r), name);
    return sp_ckpt_read_rows(r, name, row, cols ? 1 : want_rows, buf, err);
}

sp_status sp_xstate_load(sp_ckpt *ck, int rank, int64_t P, uint32_t layout, int jobsites,
                         sp_xstate_meta *m, int *found,
                         float *g_i, float *g, float *x, double *w, char *warn, size_t warn_cap,
                         sp_err *err) {
    sp_ckpt_reader *r = NULL;
    *found = 0;
    sp_status st = sp_ckpt_open_latest(ck, &r, warn, warn_cap, err);
    if (st == SP_ENOTFOUND) return SP_OK;
    SP_FORWARD(st);
    *found = 1;
    char *text = NULL;
    st = sp_ckpt_get_attr_str(r, "state", &text, err);
    if (st == SP_OK) st = meta_parse(text, sp_ckpt_reader_path(r), m, err);
    free(text);
    /* Another model or site split: the caller reports it from m; nothing to read. */
    if (st == SP_OK && (m->layout != layout || m->jobsites != jobsites)) {
        sp_ckpt_reader_close(r);
        return SP_OK;
    }
    if (st == SP_OK) st = read_vec(r, "g_sites", rank, m->jobsites, P, g_i, err);
    if (st == SP_OK && g) st = read_vec(r, "g", 0, P, 0, g, err);
    if (st == SP_OK && x) st = read_vec(r, "x", 0, P, 0, x, err);
    if (st == SP_OK && w) st = read_vec(r, "w", 0, m->sites, 0, w, err);
    sp_ckpt_reader_close(r);
    return st;
}

sp_status sp_xstate_save(sp_ckpt *ck, int rank, int size, int64_t P, const sp_xstate_meta *m,
                         const float *g_i, const float *g, const float *x, const double *w,
                         int server, sp_err *err) {
    char *text = meta_json(m);
    sp_status st = text ? SP_OK : sp_err_set(err, SP_ENOMEM, "state: out of memory");
    int64_t sh2[2] = {size, P}, sh1[1] = {P}, shw[1] = {m->sites};
    /* Every rank describes the same datasets; only the server's rank 0 holds rows of g/x/w. */
    int mine = server && rank == 0;
    if (st == SP_OK) st = sp_ckpt_begin(ck, m->round, err);
    if (st == SP_OK) st = sp_ckpt_put_attr_str(ck, "state", text, err);
    if (st == SP_OK) st = sp_ckpt_put_rows(ck, "g_sites", SP_CKPT_F32, 2, sh2, rank, 1, g_i, err);
    if (st == SP_OK && server) st = sp_ckpt_put_rows(ck, "g", SP_CKPT_F32, 1, sh1, 0, mine ? P : 0, g, err);
    if (st == SP_OK && server && m->downlink[0] && strcmp(m->downlink, "none") != 0)
        st = sp_ckpt_put_rows(ck, "x", SP_CKPT_F32, 1, sh1, 0, mine ? P : 0, x, err);
    if (st == SP_OK && server) st = sp_ckpt_put_rows(ck, "w", SP_CKPT_F64, 1, shw, 0, mine ? m->sites : 0, w, err);
    sp_status c = sp_ckpt_commit(ck, err); /* always: keeps the I/O threads in step */
    if (st == SP_OK) st = c;
    sp_status d = sp_ckpt_wait_all(ck, err);
    if (st == SP_OK) st = d;
    free(text);
    return st;
}
