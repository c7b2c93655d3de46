/* sp_safetensors.c — map and validate one .safetensors file (see sp_safetensors.h).
 *
 * Validation order, so that the class of error is meaningful:
 *   1. file >= 8 bytes, header length plausible and inside the file  (ETRUNC / EFORMAT)
 *   2. header is one JSON object followed only by padding             (EFORMAT)
 *   3. per tensor: dtype known, shape integral, byte length consistent (EFORMAT / EUNSUPPORTED)
 *   4. no duplicate names, no overlapping byte ranges                 (EFORMAT)
 *   5. every range inside the data area                                (ETRUNC: the file is
 *      shorter than its own header says, which is what a cut-off download looks like)
 */
#include "shards/sp_safetensors.h"

#include "common/sp_mapfile.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shardpress reads little-endian tensor data in place; big-endian hosts are not supported"
#endif

/* The reference implementation refuses headers above 100 MB; so do we (a 70B model's
 * header is ~100 KB), which also catches garbage lengths before they look like truncation. */
#define SP_ST_MAX_HEADER 100000000ull
/* JSON integers are doubles in cJSON: exact up to 2^53. */
#define SP_ST_MAX_INT 9007199254740992.0

struct sp_st_file {
    char *path;
    unsigned char *map;   /* whole file, PROT_READ                                  */
    size_t map_len;
    uint64_t data_len;    /* bytes after the header                                  */
    sp_st_tensor *t;      /* n tensors sorted by name; names point into `names`      */
    size_t n;
    char *names;          /* all names, NUL-separated                                */
    cJSON *meta;          /* "__metadata__" object or NULL                           */
};

const char *sp_safetensors_path(const sp_st_file *f) { return f->path; }
size_t sp_safetensors_count(const sp_st_file *f) { return f->n; }
const sp_st_tensor *sp_safetensors_at(const sp_st_file *f, size_t i) {
    return i < f->n ? &f->t[i] : NULL;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const sp_st_tensor *)a)->name, ((const sp_st_tensor *)b)->name);
}

const sp_st_tensor *sp_safetensors_find(const sp_st_file *f, const char *name) {
    sp_st_tensor key;
    key.name = name;
    return bsearch(&key, f->t, f->n, sizeof *f->t, cmp_tensor_name);
}

const char *sp_safetensors_metadata(const sp_st_file *f, const char *key) {
    if (!f->meta) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(f->meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void sp_safetensors_close(sp_st_file *f) {
    if (!f) return;
    sp_mapfile_close(f->map, f->map_len);
    cJSON_Delete(f->meta);
    free(f->t);
    free(f->names);
    free(f->path);
    free(f);
}

/* "[a, b, c]" into buf (for messages). */
static const char *fmt_shape(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

/* A JSON number that is a non-negative integer below 2^53. */
static int json_u53(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > SP_ST_MAX_INT || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

/* dtypes that are valid safetensors but that shardpress does not read. */
static int st_dtype_known_unsupported(const char *s) {
    static const char *const names[] = {"F64", "BOOL", "I16", "U16", "U32", "U64",
                                        "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3",
                                        "F6_E3M2", "F4"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i]) == 0) return 1;
    return 0;
}

/* Parse one header entry into t (name set by the caller). */
static sp_status parse_entry(sp_st_tensor *t, const cJSON *e, const char *path, sp_err *err) {
    const char *nm = t->name;
    SP_RETURN_IF(!cJSON_IsObject(e), err, SP_EFORMAT, "%s: tensor '%s': header entry is not an object",
                 path, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    SP_RETURN_IF(!cJSON_IsString(dt), err, SP_EFORMAT, "%s: tensor '%s': missing string field 'dtype'",
                 path, nm);
    if (!sp_dtype_from_name(dt->valuestring, &t->dtype)) {
        SP_RETURN_IF(st_dtype_known_unsupported(dt->valuestring), err, SP_EUNSUPPORTED,
                     "%s: tensor '%s': dtype %s is not supported (F32, F16, BF16, I32, I64, U8, I8)",
                     path, nm, dt->valuestring);
        return sp_err_set(err, SP_EFORMAT, "%s: tensor '%s': unknown dtype '%.40s'", path, nm,
                          dt->valuestring);
    }
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    SP_RETURN_IF(!cJSON_IsArray(sh), err, SP_EFORMAT, "%s: tensor '%s': missing array field 'shape'",
                 path, nm);
    int nd = cJSON_GetArraySize(sh);
    SP_RETURN_IF(nd > SP_ST_MAX_DIMS, err, SP_EUNSUPPORTED, "%s: tensor '%s': shape has %d dims (max %d)",
                 path, nm, nd, SP_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, sh) {
        uint64_t v;
        SP_RETURN_IF(!json_u53(d, &v), err, SP_EFORMAT,
                     "%s: tensor '%s': shape[%d] is not a non-negative integer", path, nm, i);
        t->shape[i++] = (int64_t)v;
        SP_RETURN_IF(__builtin_mul_overflow(numel, v, &numel), err, SP_EFORMAT,
                     "%s: tensor '%s': shape overflows", path, nm);
    }
    uint64_t need;
    SP_RETURN_IF(__builtin_mul_overflow(numel, (uint64_t)sp_dtype_size(t->dtype), &need), err,
                 SP_EFORMAT, "%s: tensor '%s': shape overflows", path, nm);
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    SP_RETURN_IF(!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
                     !json_u53(cJSON_GetArrayItem(off, 0), &t->begin) ||
                     !json_u53(cJSON_GetArrayItem(off, 1), &t->end),
                 err, SP_EFORMAT, "%s: tensor '%s': 'data_offsets' is not [begin, end] of integers",
                 path, nm);
    SP_RETURN_IF(t->begin > t->end, err, SP_EFORMAT,
                 "%s: tensor '%s': data_offsets [%llu, %llu] has begin > end", path, nm,
                 (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end - t->begin != need) {
        char sbuf[160];
        return sp_err_set(err, SP_EFORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but shape %s x "
                          "%s needs %llu", path, nm, (unsigned long long)t->begin,
                          (unsigned long long)t->end, (unsigned long long)(t->end - t->begin),
                          fmt_shape(sbuf, sizeof sbuf, t->shape, nd), sp_dtype_name(t->dtype),
                          (unsigned long long)need);
    }
    t->nbytes = (size_t)need;
    return SP_OK;
}

static int cmp_tensor_begin(const void *a, const void *b) {
    const sp_st_tensor *x = *(const sp_st_tensor *const *)a, *y = *(const sp_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : (x->end > y->end);
}

/* Steps 4 and 5 of the validation: duplicates, overlaps, data area bounds. */
static sp_status check_layout(sp_st_file *f, sp_err *err) {
    for (size_t i = 1; i < f->n; i++)
        SP_RETURN_IF(strcmp(f->t[i - 1].name, f->t[i].name) == 0, err, SP_EFORMAT,
                     "%s: tensor '%s' appears twice in the header", f->path, f->t[i].name);
    const sp_st_tensor **by = sp_malloc((f->n ? f->n : 1) * sizeof *by, err, "tensor order");
    if (!by) return SP_ENOMEM;
    for (size_t i = 0; i < f->n; i++) by[i] = &f->t[i];
    qsort(by, f->n, sizeof *by, cmp_tensor_begin);
    sp_status st = SP_OK;
    const sp_st_tensor *prev = NULL; /* the non-empty tensor that reaches furthest so far */
    for (size_t i = 0; i < f->n && st == SP_OK; i++) {
        const sp_st_tensor *t = by[i];
        if (t->begin == t->end) continue; /* empty tensors occupy no bytes */
        if (prev && t->begin < prev->end)
            st = sp_err_set(err, SP_EFORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]",
                            f->path, t->name, (unsigned long long)t->begin,
                            (unsigned long long)t->end, prev->name,
                            (unsigned long long)prev->begin, (unsigned long long)prev->end);
        if (!prev || t->end > prev->end) prev = t;
    }
    for (size_t i = 0; i < f->n && st == SP_OK; i++) {
        const sp_st_tensor *t = by[i];
        if (t->end > f->data_len)
            st = sp_err_set(err, SP_ETRUNC,
                            "%s: tensor '%s': data_offsets [%llu, %llu] past end of data (size %llu); "
                            "the file is truncated", f->path, t->name,
                            (unsigned long long)t->begin, (unsigned long long)t->end,
                            (unsigned long long)f->data_len);
    }
    free(by);
    return st;
}

/* Steps 2 and 3: parse the JSON header at hdr[0..len) into f->t. */
static sp_status parse_header(sp_st_file *f, const char *hdr, size_t len, sp_err *err) {
    sp_status st = SP_OK;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, len, &end, 0);
    if (!root) {
        size_t at = end && end >= hdr ? (size_t)(end - hdr) : 0;
        return sp_err_set(err, SP_EFORMAT, "%s: header is not valid JSON (near header byte %zu)",
                          f->path, at);
    }
    for (const char *p = end; p < hdr + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != '\0') {
            st = sp_err_set(err, SP_EFORMAT, "%s: header has trailing bytes after the JSON object "
                            "(at header byte %zu)", f->path, (size_t)(p - hdr));
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        st = sp_err_set(err, SP_EFORMAT, "%s: header is not a JSON object", f->path);
        goto done;
    }
    f->meta = cJSON_DetachItemFromObjectCaseSensitive(root, "__metadata__");
    if (f->meta) {
        const cJSON *v;
        int ok = cJSON_IsObject(f->meta) || cJSON_IsNull(f->meta);
        if (cJSON_IsObject(f->meta))
            cJSON_ArrayForEach(v, f->meta) ok = ok && cJSON_IsString(v);
        if (!ok) {
            st = sp_err_set(err, SP_EFORMAT, "%s: '__metadata__' must map strings to strings",
                            f->path);
            goto done;
        }
    }
    size_t n = 0, name_bytes = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        n++;
        name_bytes += strlen(e->string) + 1;
    }
    f->t = sp_calloc(n ? n : 1, sizeof *f->t, err, "tensor table");
    f->names = sp_malloc(name_bytes ? name_bytes : 1, err, "tensor names");
    if (!f->t || !f->names) {
        st = SP_ENOMEM;
        goto done;
    }
    char *np = f->names;
    cJSON_ArrayForEach(e, root) {
        sp_st_tensor *t = &f->t[f->n];
        size_t L = strlen(e->string) + 1;
        memcpy(np, e->string, L);
        t->name = np;
        np += L;
        st = parse_entry(t, e, f->path, err);
        if (st != SP_OK) goto done;
        f->n++;
    }
    qsort(f->t, f->n, sizeof *f->t, cmp_tensor_name);
    st = check_layout(f, err);
    if (st != SP_OK) goto done;
    const unsigned char *data = f->map + 8 + len;
    for (size_t i = 0; i < f->n; i++) f->t[i].data = data + f->t[i].begin;
done:
    cJSON_Delete(root);
    return st;
}

sp_status sp_safetensors_open(sp_st_file **out, const char *path, sp_err *err) {
    *out = NULL;
    sp_status st = SP_OK;
    sp_st_file *f = sp_calloc(1, sizeof *f, err, "safetensors file");
    if (!f) return SP_ENOMEM;
    f->path = strdup(path);
    if (!f->path) {
        st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    void *map = NULL;
    size_t size = 0;
    st = sp_mapfile_open(path, 8, "the 8-byte header length; the file is truncated", &map, &size,
                         err);
    if (st != SP_OK) goto fail;
    f->map = map;
    f->map_len = size;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->map[i]; /* little-endian u64 */
    if (hlen > SP_ST_MAX_HEADER || hlen < 2) {
        st = sp_err_set(err, SP_EFORMAT, "%s: header length %llu is impossible (must be 2..%llu); "
                        "not a safetensors file?", path, (unsigned long long)hlen,
                        (unsigned long long)SP_ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > size - 8) {
        st = sp_err_set(err, SP_ETRUNC, "%s: header length %llu runs past the end of the file "
                        "(%zu bytes); the file is truncated", path, (unsigned long long)hlen, size);
        goto fail;
    }
    f->data_len = size - 8 - hlen;
    st = parse_header(f, (const char *)f->map + 8, (size_t)hlen, err);
    if (st != SP_OK) goto fail;
    *out = f;
    return SP_OK;
fail:
    sp_safetensors_close(f);
    return st;
}
