/* sp_qrun.c — see sp_qrun.h. */
#include "pipeline/quantize/sp_qrun.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "kernels/sp_gtype.h"
#include "kernels/sp_quant.h"
#include "kernels/sp_rotate.h"

/* ---- files ---------------------------------------------------------------------------- */

sp_status sp_qrun_read_file(const char *path, char **text, sp_err *err) {
    *text = NULL;
    FILE *f = fopen(path, "rb");
    SP_RETURN_IF(!f, err, errno == ENOENT ? SP_ENOTFOUND : SP_EIO, "%s: cannot open: %s", path,
                 strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (1 << 24)) {
        fclose(f);
        return sp_err_set(err, SP_EFORMAT, "%s: unexpected size %ld", path, n);
    }
    *text = sp_malloc((size_t)n + 1, err, path);
    if (!*text) {
        fclose(f);
        return SP_ENOMEM;
    }
    size_t got = fread(*text, 1, (size_t)n, f);
    fclose(f);
    (*text)[got] = '\0';
    SP_RETURN_IF(got != (size_t)n, err, SP_EIO, "%s: short read", path);
    return SP_OK;
}

sp_status sp_qrun_write_file(const char *path, const char *text, sp_err *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    SP_RETURN_IF(fd < 0, err, SP_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    ssize_t w = write(fd, text, n);
    int ok = w == (ssize_t)n && fsync(fd) == 0;
    int e = errno;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return sp_err_set(err, SP_EIO, "%s: write failed: %s", path, strerror(ok ? errno : e));
    }
    return SP_OK;
}

/* ---- fingerprints --------------------------------------------------------------------- */

/* CRC of bytes [off, off+len) of an open file. */
static sp_status crc_range(int fd, off_t off, size_t len, uLong *crc, const char *path, sp_err *err) {
    char buf[1 << 16];
    while (len > 0) {
        size_t want = len < sizeof buf ? len : sizeof buf;
        ssize_t n = pread(fd, buf, want, off);
        SP_RETURN_IF(n <= 0, err, SP_EIO, "%s: read failed at %lld", path, (long long)off);
        *crc = crc32(*crc, (const Bytef *)buf, (uInt)n);
        off += n;
        len -= (size_t)n;
    }
    return SP_OK;
}

static sp_status crc_weight_file(const char *path, const char *name, uLong *crc, sp_err *err) {
    int fd = open(path, O_RDONLY);
    SP_RETURN_IF(fd < 0, err, SP_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    sp_status st = SP_OK;
    if (fstat(fd, &sb) != 0) st = sp_err_set(err, SP_EIO, "%s: cannot stat", path);
    uint64_t size = (uint64_t)sb.st_size;
    *crc = crc32(*crc, (const Bytef *)name, (uInt)strlen(name));
    *crc = crc32(*crc, (const Bytef *)&size, sizeof size);
    size_t nlen = strlen(name);
    const size_t MiB = (size_t)1 << 20;
    if (st == SP_OK && nlen > 12 && !strcmp(name + nlen - 12, ".safetensors") && size >= 8) {
        uint64_t hl = 0;
        if (pread(fd, &hl, 8, 0) != 8) st = sp_err_set(err, SP_EIO, "%s: read failed", path);
        if (st == SP_OK && hl <= size - 8) st = crc_range(fd, 0, (size_t)(8 + hl), crc, path, err);
    } else if (st == SP_OK && size <= 64 * MiB) {
        st = crc_range(fd, 0, (size_t)size, crc, path, err);
    } else if (st == SP_OK) {
        st = crc_range(fd, 0, MiB, crc, path, err);
        if (st == SP_OK) st = crc_range(fd, (off_t)(size - MiB), MiB, crc, path, err);
    }
    close(fd);
    return st;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

sp_status sp_qrun_model_fingerprint(const char *model_path, uint32_t *fp, sp_err *err) {
    uLong crc = crc32(0L, Z_NULL, 0);
    struct stat sb;
    SP_RETURN_IF(stat(model_path, &sb) != 0, err, SP_EIO, "%s: cannot stat: %s", model_path,
                 strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        const char *base = strrchr(model_path, '/');
        SP_FORWARD(crc_weight_file(model_path, base ? base + 1 : model_path, &crc, err));
        *fp = (uint32_t)crc;
        return SP_OK;
    }
    DIR *d = opendir(model_path);
    SP_RETURN_IF(!d, err, SP_EIO, "%s: cannot list: %s", model_path, strerror(errno));
    char *names[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        size_t len = strlen(e->d_name);
        int weight = (len > 12 && !strcmp(e->d_name + len - 12, ".safetensors")) ||
                     (len > 4 && !strcmp(e->d_name + len - 4, ".bin") && strncmp(e->d_name, "tok", 3)) ||
                     !strcmp(e->d_name, "config.json") || !strcmp(e->d_name, "model.safetensors.index.json") ||
                     !strcmp(e->d_name, "model.sp.h5");
        if (weight) names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], name_cmp); /* readdir order is not stable */
    sp_status st = SP_OK;
    for (int i = 0; i < n; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", model_path, names[i]);
        if (st == SP_OK) st = crc_weight_file(path, names[i], &crc, err);
        free(names[i]);
    }
    *fp = (uint32_t)crc;
    return st;
}

sp_status sp_qrun_file_fingerprint(const char *path, uint32_t *fp, sp_err *err) {
    int fd = open(path, O_RDONLY);
    SP_RETURN_IF(fd < 0, err, SP_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    uLong crc = crc32(0L, Z_NULL, 0);
    sp_status st = fstat(fd, &sb) == 0 ? crc_range(fd, 0, (size_t)sb.st_size, &crc, path, err)
                                       : sp_err_set(err, SP_EIO, "%s: cannot stat", path);
    close(fd);
    *fp = (uint32_t)crc;
    return st;
}

/* ---- JSON ----------------------------------------------------------------------------- */

sp_status sp_qrun_to_json(const sp_quantize_opts *o, uint32_t model_fp, uint32_t calib_fp,
                          char **json, sp_err *err) {
    cJSON *j = cJSON_CreateObject();
    SP_RETURN_IF(!j, err, SP_ENOMEM, "run.json: out of memory");
    cJSON_AddStringToObject(j, "format", "shardpress-quantize-run");
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddStringToObject(j, "model", o->model_dir);
    if (o->calib_path) cJSON_AddStringToObject(j, "calib", o->calib_path);
    cJSON_AddStringToObject(j, "out", o->out_dir);
    cJSON_AddStringToObject(j, "checkpoint_dir", o->checkpoint_dir);
    if (o->imatrix_out) cJSON_AddStringToObject(j, "imatrix_out", o->imatrix_out);
    cJSON_AddNumberToObject(j, "checkpoint_every", o->checkpoint_every);
    cJSON_AddNumberToObject(j, "checkpoint_compress", o->checkpoint_compress);
    cJSON_AddNumberToObject(j, "bits", o->bits);
    cJSON *lv = cJSON_AddArrayToObject(j, "levels");
    for (int i = 0; i < o->n_levels; i++) cJSON_AddItemToArray(lv, cJSON_CreateNumber(o->levels[i]));
    int any_gt = 0;
    for (int i = 0; i < o->n_levels; i++) any_gt |= o->gtypes[i] != 0;
    if (any_gt) { /* issue 11: the GGUF type of each level, "" for a plain level */
        cJSON *gt = cJSON_AddArrayToObject(j, "gguf_types");
        for (int i = 0; i < o->n_levels; i++)
            cJSON_AddItemToArray(gt, cJSON_CreateString(o->gtypes[i] ? sp_gtype_name(o->gtypes[i])
                                                                       : ""));
    }
    int any_lg = 0;
    for (int i = 0; i < o->n_levels; i++) any_lg |= o->level_group[i] != 0;
    if (any_lg) { /* "4g128": each level's own group size, 0 for --group-size */
        cJSON *lg = cJSON_AddArrayToObject(j, "level_group_sizes");
        for (int i = 0; i < o->n_levels; i++)
            cJSON_AddItemToArray(lg, cJSON_CreateNumber(o->level_group[i]));
    }
    cJSON_AddNumberToObject(j, "group_size", o->group_size);
    cJSON_AddNumberToObject(j, "sym", o->sym);
    cJSON_AddNumberToObject(j, "act_order", o->act_order);
    cJSON_AddNumberToObject(j, "mse", o->scale_search == SP_QSEARCH_MSE);
    cJSON_AddStringToObject(j, "scale_search", sp_quant_search_name(o->scale_search));
    cJSON_AddNumberToObject(j, "true_sequential", o->true_sequential);
    cJSON_AddNumberToObject(j, "rtn", o->rtn);
    cJSON_AddNumberToObject(j, "damp", o->damp);
    cJSON_AddNumberToObject(j, "block", o->block);
    cJSON_AddNumberToObject(j, "nsamples", o->nsamples);
    cJSON_AddNumberToObject(j, "ctx", o->ctx);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed); /* exact: no double */
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "force", o->force);
    if (o->rotate) { /* issue 23; absent: no rotation */
        cJSON_AddStringToObject(j, "rotate", sp_rotate_name(o->rotate));
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->rotate_seed);
        cJSON_AddStringToObject(j, "rotate_seed", seed);
    }
    cJSON_AddNumberToObject(j, "model_fingerprint", model_fp);
    cJSON_AddNumberToObject(j, "calib_fingerprint", calib_fp);
    *json = cJSON_Print(j);
    cJSON_Delete(j);
    SP_RETURN_IF(!*json, err, SP_ENOMEM, "run.json: out of memory");
    return SP_OK;
}

void sp_qrun_free_strings(sp_qrun_strings *s) {
    free(s->model_dir);
    free(s->calib_path);
    free(s->out_dir);
    free(s->checkpoint_dir);
    free(s->imatrix_out);
    memset(s, 0, sizeof *s);
}

static sp_status get_num(const cJSON *j, const char *key, double *v, const char *what, sp_err *err) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    SP_RETURN_IF(!cJSON_IsNumber(x), err, SP_EFORMAT, "%s: field '%s' missing or not a number",
                 what, key);
    *v = x->valuedouble;
    return SP_OK;
}

/* A number that must be an integer in [lo, hi] (a JSON double converted to int or uint32_t
 * outside that range is undefined behaviour; fuzz_run_json found it). */
static sp_status get_int(const cJSON *j, const char *key, double lo, double hi, double *v,
                         const char *what, sp_err *err) {
    SP_FORWARD(get_num(j, key, v, what, err));
    SP_RETURN_IF(!(*v >= lo && *v <= hi) || *v != (double)(int64_t)*v, err, SP_EFORMAT,
                 "%s: field '%s' is %g, not an integer in %.0f..%.0f", what, key, *v, lo, hi);
    return SP_OK;
}

static sp_status get_str(const cJSON *j, const char *key, char **v, int required, const char *what,
                         sp_err *err) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!x && !required) return SP_OK;
    SP_RETURN_IF(!cJSON_IsString(x), err, SP_EFORMAT, "%s: field '%s' missing or not a string",
                 what, key);
    *v = strdup(x->valuestring);
    SP_RETURN_IF(!*v, err, SP_ENOMEM, "%s: out of memory", what);
    return SP_OK;
}

sp_status sp_qrun_from_json(const char *json, const char *what, sp_quantize_opts *o,
                            sp_qrun_strings *s, uint32_t *model_fp, uint32_t *calib_fp,
                            sp_err *err) {
    memset(s, 0, sizeof *s);
    sp_quantize_defaults(o);
    cJSON *j = cJSON_Parse(json);
    SP_RETURN_IF(!j, err, SP_EFORMAT, "%s: not valid JSON", what);
    sp_status st = SP_OK;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "shardpress-quantize-run") != 0)
        st = sp_err_set(err, SP_EFORMAT, "%s: field 'format' is not shardpress-quantize-run", what);
    if (st == SP_OK) st = get_str(j, "model", &s->model_dir, 1, what, err);
    if (st == SP_OK) st = get_str(j, "calib", &s->calib_path, 0, what, err);
    if (st == SP_OK) st = get_str(j, "out", &s->out_dir, 1, what, err);
    if (st == SP_OK) st = get_str(j, "checkpoint_dir", &s->checkpoint_dir, 1, what, err);
    if (st == SP_OK) st = get_str(j, "imatrix_out", &s->imatrix_out, 0, what, err);
    double v = 0;
    struct { const char *key; int *dst; } ints[] = {
        {"checkpoint_every", &o->checkpoint_every}, {"checkpoint_compress", &o->checkpoint_compress},
        {"bits", &o->bits},
        {"group_size", &o->group_size}, {"sym", &o->sym}, {"act_order", &o->act_order},
        {"mse", &o->scale_search}, {"rtn", &o->rtn}, {"block", &o->block}, {"nsamples", &o->nsamples},
        {"ctx", &o->ctx}, {"force", &o->force}};
    for (size_t i = 0; st == SP_OK && i < sizeof ints / sizeof ints[0]; i++) {
        st = get_int(j, ints[i].key, INT_MIN, INT_MAX, &v, what, err);
        if (st == SP_OK) *ints[i].dst = (int)v;
    }
    if (st == SP_OK) st = get_num(j, "damp", &o->damp, what, err);
    /* Added later: a run.json without them was written by a version that had only "mse" (0/1,
     * read above as SP_QSEARCH_MINMAX/MSE) and no true-sequential mode. */
    const cJSON *ss = cJSON_GetObjectItemCaseSensitive(j, "scale_search");
    if (st == SP_OK && ss) {
        o->scale_search = cJSON_IsString(ss) ? sp_quant_search_parse(ss->valuestring) : -1;
        if (o->scale_search < 0)
            st = sp_err_set(err, SP_EFORMAT, "%s: field 'scale_search' is not minmax, mse, hmse or gguf",
                            what);
    }
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "true_sequential");
    if (st == SP_OK) o->true_sequential = 0;
    if (st == SP_OK && ts) {
        if (cJSON_IsNumber(ts)) o->true_sequential = ts->valueint != 0;
        else st = sp_err_set(err, SP_EFORMAT, "%s: field 'true_sequential' is not a number", what);
    }
    if (st == SP_OK) st = get_int(j, "model_fingerprint", 0, UINT32_MAX, &v, what, err);
    if (st == SP_OK) *model_fp = (uint32_t)v;
    if (st == SP_OK) st = get_int(j, "calib_fingerprint", 0, UINT32_MAX, &v, what, err);
    if (st == SP_OK) *calib_fp = (uint32_t)v;
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(j, "seed");
    if (st == SP_OK && !cJSON_IsString(seed))
        st = sp_err_set(err, SP_EFORMAT, "%s: field 'seed' missing", what);
    if (st == SP_OK) o->seed = strtoull(seed->valuestring, NULL, 10);
    /* Added with issue 23; absent: no rotation. */
    const cJSON *rot = cJSON_GetObjectItemCaseSensitive(j, "rotate");
    const cJSON *rseed = cJSON_GetObjectItemCaseSensitive(j, "rotate_seed");
    if (st == SP_OK && rot) {
        o->rotate = cJSON_IsString(rot) ? sp_rotate_parse(rot->valuestring) : -1;
        if (o->rotate < 0)
            st = sp_err_set(err, SP_EFORMAT, "%s: field 'rotate' is not none, hadamard or "
                            "orthogonal", what);
        else if (!cJSON_IsString(rseed))
            st = sp_err_set(err, SP_EFORMAT, "%s: field 'rotate_seed' missing", what);
        else
            o->rotate_seed = strtoull(rseed->valuestring, NULL, 10);
    }
    const cJSON *lv = cJSON_GetObjectItemCaseSensitive(j, "levels");
    if (st == SP_OK && (!cJSON_IsArray(lv) || cJSON_GetArraySize(lv) < 1 ||
                        cJSON_GetArraySize(lv) > SP_QUANTIZE_MAX_LEVELS))
        st = sp_err_set(err, SP_EFORMAT, "%s: field 'levels' invalid", what);
    if (st == SP_OK) {
        o->n_levels = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, lv) o->levels[o->n_levels++] = cJSON_IsNumber(x) ? x->valueint : 0;
    }
    /* Added with issue 11; absent: every level is plain. */
    const cJSON *gt = cJSON_GetObjectItemCaseSensitive(j, "gguf_types");
    for (int i = 0; i < SP_QUANTIZE_MAX_LEVELS; i++) o->gtypes[i] = 0;
    if (st == SP_OK && gt) {
        if (!cJSON_IsArray(gt) || cJSON_GetArraySize(gt) != o->n_levels)
            st = sp_err_set(err, SP_EFORMAT, "%s: field 'gguf_types' is not one name per level",
                            what);
        int i = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, gt) {
            if (st != SP_OK) break;
            int t = cJSON_IsString(x) ? (x->valuestring[0] ? sp_gtype_parse(x->valuestring) : 0) : -1;
            if (t < 0 || (t && !sp_gtype_is_level(t)))
                st = sp_err_set(err, SP_EFORMAT, "%s: field 'gguf_types'[%d] is not a GGUF level "
                                "type", what, i);
            else o->gtypes[i++] = t;
        }
    }
    /* Added with per-level group sizes; absent: every plain level has --group-size's. */
    const cJSON *lg = cJSON_GetObjectItemCaseSensitive(j, "level_group_sizes");
    for (int i = 0; i < SP_QUANTIZE_MAX_LEVELS; i++) o->level_group[i] = 0;
    if (st == SP_OK && lg) {
        if (!cJSON_IsArray(lg) || cJSON_GetArraySize(lg) != o->n_levels)
            st = sp_err_set(err, SP_EFORMAT, "%s: field 'level_group_sizes' is not one number "
                            "per level", what);
        int i = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, lg) {
            if (st != SP_OK) break;
            double g = cJSON_IsNumber(x) ? x->valuedouble : -2;
            if (g != (int)g || g < -1 || g > (1 << 20))
                st = sp_err_set(err, SP_EFORMAT, "%s: field 'level_group_sizes'[%d] is not a "
                                "group size (0, -1 or 1..%d)", what, i, 1 << 20);
            else o->level_group[i++] = (int)g;
        }
    }
    cJSON_Delete(j);
    if (st == SP_OK) {
        o->model_dir = s->model_dir;
        o->calib_path = s->calib_path;
        o->out_dir = s->out_dir;
        o->checkpoint_dir = s->checkpoint_dir;
        o->imatrix_out = s->imatrix_out;
    } else {
        sp_qrun_free_strings(s);
    }
    return st;
}
