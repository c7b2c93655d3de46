/* sp_compress.c — see sp_compress.h. Shapes: x [d] the input, S the kept index set (|S| = k),
 * B = SP_CMP_Q8_BLOCK. */
#include "mpi/sp_compress.h"
#include "common/sp_rng.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#define CMP_MAGIC "SPC1"

/* ---- spec ---------------------------------------------------------------------------------- */

/* v: the text after "topk:" / "randk:"; what: the whole spec, for messages. */
static sp_status parse_k(const char *what, const char *v, sp_cmp_spec *o, sp_err *err) {
    char *end = NULL;
    const char *at = strchr(v, '@');
    size_t n = at ? (size_t)(at - v) : strlen(v);
    char num[64];
    SP_RETURN_IF(n == 0 || n >= sizeof num, err, SP_EINVAL,
                 "compressor '%s': expected topk|randk:FRACTION or :COUNT", what);
    memcpy(num, v, n);
    num[n] = '\0';
    if (strchr(num, '.') || strchr(num, 'e') || strchr(num, 'E')) {
        double f = strtod(num, &end);
        SP_RETURN_IF(*end || !(f > 0.0 && f <= 1.0), err, SP_EINVAL,
                     "compressor '%s': fraction '%s' is not in (0, 1]", what, num);
        o->frac = f;
        o->count = 0;
    } else {
        long long c = strtoll(num, &end, 10);
        SP_RETURN_IF(*end || c < 1, err, SP_EINVAL,
                     "compressor '%s': count '%s' is not a positive integer", what, num);
        o->count = c;
        o->frac = 0.0;
    }
    if (at) {
        unsigned long long s = strtoull(at + 1, &end, 10);
        SP_RETURN_IF(at[1] == '\0' || *end, err, SP_EINVAL,
                     "compressor '%s': seed '%s' is not an integer", what, at + 1);
        o->seed = s;
    }
    return SP_OK;
}

sp_status sp_cmp_parse(const char *s, sp_cmp_spec *o, sp_err *err) {
    memset(o, 0, sizeof *o);
    SP_RETURN_IF(!s || !*s, err, SP_EINVAL, "compressor: empty spec");
    char buf[256];
    SP_RETURN_IF(strlen(s) >= sizeof buf, err, SP_EINVAL, "compressor '%.40s...': too long", s);
    snprintf(buf, sizeof buf, "%s", s);
    char *save = NULL;
    int first = 1;
    for (char *part = strtok_r(buf, "+", &save); part; part = strtok_r(NULL, "+", &save)) {
        if (!strcmp(part, "zstd")) {
            o->zstd = 1;
        } else if (first && (!strcmp(part, "none") || !strcmp(part, "dense"))) {
            o->kind = SP_CMP_DENSE;
        } else if (first && !strcmp(part, "q8")) {
            o->kind = SP_CMP_Q8;
        } else if (first && !strncmp(part, "topk:", 5)) {
            o->kind = SP_CMP_TOPK;
            SP_FORWARD(parse_k(s, part + 5, o, err));
        } else if (first && !strncmp(part, "randk:", 6)) {
            o->kind = SP_CMP_RANDK;
            SP_FORWARD(parse_k(s, part + 6, o, err));
        } else if (!first && (!strcmp(part, "q8") || !strcmp(part, "sign"))) {
            SP_RETURN_IF(o->kind != SP_CMP_TOPK && o->kind != SP_CMP_RANDK, err, SP_EINVAL,
                         "compressor '%s': +%s applies to topk or randk only", s, part);
            SP_RETURN_IF(o->values != SP_CMP_VAL_F32, err, SP_EINVAL,
                         "compressor '%s': give one of +q8, +sign", s);
            o->values = !strcmp(part, "q8") ? SP_CMP_VAL_Q8 : SP_CMP_VAL_SIGN;
        } else {
            return sp_err_set(err, SP_EINVAL, "compressor '%s': unknown part '%s' (expected "
                              "none, topk:K, randk:K, q8, +q8, +sign, +zstd)", s, part);
        }
        /* "+zstd" alone (a leading '+') means dense + zstd. */
        first = 0;
    }
    return SP_OK;
}

void sp_cmp_format(const sp_cmp_spec *s, char *buf, size_t cap) {
    char k[64] = "";
    if (s->kind == SP_CMP_TOPK || s->kind == SP_CMP_RANDK) {
        if (s->count > 0) snprintf(k, sizeof k, ":%" PRId64, s->count);
        else snprintf(k, sizeof k, ":%.17g", s->frac);
        /* A fraction always carries a '.', so that it parses back as a fraction. */
        if (s->count == 0 && !strpbrk(k, ".e")) strncat(k, ".0", sizeof k - strlen(k) - 1);
        if (s->kind == SP_CMP_RANDK && s->seed)
            snprintf(k + strlen(k), sizeof k - strlen(k), "@%" PRIu64, s->seed);
    }
    const char *base = s->kind == SP_CMP_TOPK ? "topk" : s->kind == SP_CMP_RANDK ? "randk"
                       : s->kind == SP_CMP_Q8 ? "q8" : "none";
    const char *val = s->values == SP_CMP_VAL_Q8 ? "+q8" : s->values == SP_CMP_VAL_SIGN ? "+sign" : "";
    snprintf(buf, cap, "%s%s%s%s", base, k, val, s->zstd ? "+zstd" : "");
}

size_t sp_cmp_k(const sp_cmp_spec *s, size_t d) {
    if (s->kind != SP_CMP_TOPK && s->kind != SP_CMP_RANDK) return d;
    size_t k = s->count > 0 ? (size_t)s->count : (size_t)ceil(s->frac * (double)d);
    if (k > d) k = d;
    if (k == 0 && d > 0) k = 1;
    return k;
}

double sp_cmp_alpha(const sp_cmp_spec *s, size_t d) {
    if (d == 0) return 1.0;
    /* q8 error per value <= step/2 = absmax/254, so per block ‖e‖² <= B·absmax²/254² <=
     * (B/64516)·‖x_block‖². */
    const double q8 = 1.0 - (double)SP_CMP_Q8_BLOCK / (4.0 * 127.0 * 127.0);
    if (s->kind == SP_CMP_DENSE) return 1.0;
    if (s->kind == SP_CMP_Q8) return q8;
    double a = (double)sp_cmp_k(s, d) / (double)d;
    if (s->values == SP_CMP_VAL_Q8) a *= q8;
    if (s->values == SP_CMP_VAL_SIGN) a = 1.0 / (double)d;
    return a;
}

/* ---- buffers, RNG -------------------------------------------------------------------------- */

void sp_cmp_buf_free(sp_cmp_buf *b) {
    if (!b) return;
    free(b->data);
    memset(b, 0, sizeof *b);
}

sp_status sp_cmp_buf_reserve(sp_cmp_buf *b, size_t n, sp_err *err) {
    if (b->cap - b->len >= n) return SP_OK;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n) cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    SP_RETURN_IF(!p, err, SP_ENOMEM, "compressor: out of memory for a %zu-byte message", cap);
    b->data = p;
    b->cap = cap;
    return SP_OK;
}

uint64_t sp_cmp_mix64(uint64_t x) { return sp_rng_next(&x); }

static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get_u32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static uint64_t get_u64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static void put_f32(uint8_t *p, float f) { uint32_t u; memcpy(&u, &f, 4); put_u32(p, u); }
static float get_f32(const uint8_t *p) { uint32_t u = get_u32(p); float f; memcpy(&f, &u, 4); return f; }

/* ---- selection ----------------------------------------------------------------------------- */

/* |x| as an order-preserving integer key: for finite floats the IEEE bits of |x| sort as the
 * values do. */
static inline uint32_t abs_key(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    return u & 0x7fffffffu;
}

/* Long vectors: radix select on the 32-bit keys: the threshold T with #{key > T} < K <= #{key >= T}, found
 * with a histogram of the high 16 bits and then of the low 16 bits inside T's bucket. Then
 * one ascending pass keeps every key > T and the first K − #{key > T} keys equal to T: that is
 * the "ties to the lower index" rule, and the output is sorted for free. */
typedef struct {
    uint32_t key;
    uint32_t j;
} key_idx;

/* Larger key first, then lower index: the selection order. */
static int cmp_sel(const void *a, const void *b) {
    const key_idx *p = a, *q = b;
    if (p->key != q->key) return p->key > q->key ? -1 : 1;
    return p->j < q->j ? -1 : p->j > q->j;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t p = *(const uint64_t *)a, q = *(const uint64_t *)b;
    return p < q ? -1 : p > q;
}

/* Short vectors: sort (key, index) pairs; the histograms' 512 KiB would dominate. */
static sp_status topk_sort(const float *x, size_t d, size_t K, uint64_t *idx, sp_err *err) {
    key_idx *ki = sp_malloc(d * sizeof *ki, err, "top-k keys");
    if (!ki) return SP_ENOMEM;
    for (size_t j = 0; j < d; j++) ki[j] = (key_idx){abs_key(x[j]), (uint32_t)j};
    qsort(ki, d, sizeof *ki, cmp_sel);
    for (size_t j = 0; j < K; j++) idx[j] = ki[j].j;
    free(ki);
    qsort(idx, K, sizeof *idx, cmp_u64);
    return SP_OK;
}

sp_status sp_cmp_topk_indices(const float *x, size_t d, size_t K, uint64_t *idx, sp_err *err) {
    if (K == 0) return SP_OK;
    if (K >= d) {
        for (size_t j = 0; j < d; j++) idx[j] = j;
        return SP_OK;
    }
    if (K == 1) { /* the first largest: one pass */
        size_t best = 0;
        for (size_t j = 1; j < d; j++)
            if (abs_key(x[j]) > abs_key(x[best])) best = j;
        idx[0] = best;
        return SP_OK;
    }
    if (d < 65536) return topk_sort(x, d, K, idx, err);
    size_t *h = sp_calloc(65536, sizeof *h, err, "top-k histogram");
    if (!h) return SP_ENOMEM;
    for (size_t j = 0; j < d; j++) h[abs_key(x[j]) >> 16]++;
    size_t above = 0; /* keys strictly above the current bucket */
    uint32_t hi = 65535;
    for (;; hi--) {
        if (above + h[hi] >= K) break;
        above += h[hi];
    }
    memset(h, 0, 65536 * sizeof *h);
    for (size_t j = 0; j < d; j++) {
        uint32_t k = abs_key(x[j]);
        if ((k >> 16) == hi) h[k & 0xffff]++;
    }
    uint32_t lo = 65535;
    for (;; lo--) {
        if (above + h[lo] >= K) break;
        above += h[lo];
    }
    free(h);
    uint32_t T = (hi << 16) | lo;
    size_t ties = K - above, n = 0;
    for (size_t j = 0; j < d && n < K; j++) {
        uint32_t k = abs_key(x[j]);
        if (k > T || (k == T && ties > 0)) {
            if (k == T) ties--;
            idx[n++] = j;
        }
    }
    return SP_OK;
}

/* Selection sampling (Knuth's Algorithm S): K of d indices uniformly, ascending, exact K. */
static void randk_indices(size_t d, size_t K, uint64_t seed, uint64_t stream, uint64_t *idx) {
    uint64_t st = sp_cmp_mix64(seed ^ sp_cmp_mix64(stream));
    size_t n = 0;
    for (size_t j = 0; j < d && n < K; j++) {
        st += 0x9E3779B97F4A7C15ull;
        uint64_t r = sp_cmp_mix64(st);
        double u = (double)(r >> 11) * 0x1.0p-53;
        if (u * (double)(d - j) < (double)(K - n)) idx[n++] = j;
    }
}

/* ---- encode -------------------------------------------------------------------------------- */

static size_t varint_put(uint8_t *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) { p[n++] = (uint8_t)(v | 0x80); v >>= 7; }
    p[n++] = (uint8_t)v;
    return n;
}

/* q8 of vals[n] into p: per block an f32 step (absmax/127) and int8 codes. Returns bytes. */
static size_t q8_put(uint8_t *p, const float *vals, size_t n) {
    size_t o = 0;
    for (size_t b = 0; b < n; b += SP_CMP_Q8_BLOCK) {
        size_t e = b + SP_CMP_Q8_BLOCK < n ? b + SP_CMP_Q8_BLOCK : n;
        float amax = 0.0f;
        for (size_t j = b; j < e; j++) amax = fmaxf(amax, fabsf(vals[j]));
        float step = amax / 127.0f;
        put_f32(p + o, step);
        o += 4;
        for (size_t j = b; j < e; j++) {
            long c = step > 0.0f ? lrintf(vals[j] / step) : 0;
            if (c > 127) c = 127;
            if (c < -127) c = -127;
            p[o++] = (uint8_t)(int8_t)c;
        }
    }
    return o;
}

static size_t q8_bytes(size_t n) { return n + 4 * ((n + SP_CMP_Q8_BLOCK - 1) / SP_CMP_Q8_BLOCK); }

sp_status sp_cmp_encode(const sp_cmp_spec *s, const float *x, size_t d, uint64_t stream,
                        sp_cmp_buf *out, sp_err *err) {
    for (size_t j = 0; j < d; j++)
        SP_RETURN_IF(!isfinite(x[j]), err, SP_ENUMERIC,
                     "compressor: value %zu of %zu is not finite (%g)", j, d, (double)x[j]);
    int sparse = s->kind == SP_CMP_TOPK || s->kind == SP_CMP_RANDK;
    size_t k = sp_cmp_k(s, d);
    sp_status st = SP_OK;
    uint64_t *idx = NULL;
    float *vals = NULL;
    uint8_t *raw = NULL, *z = NULL;
    const float *v = x; /* the k values in message order */
    if (sparse) {
        idx = sp_malloc((k ? k : 1) * sizeof *idx, err, "compressor indices");
        vals = sp_malloc((k ? k : 1) * sizeof *vals, err, "compressor values");
        if (!idx || !vals) { st = SP_ENOMEM; goto done; }
        if (s->kind == SP_CMP_TOPK) {
            if ((st = sp_cmp_topk_indices(x, d, k, idx, err)) != SP_OK) goto done;
        } else {
            randk_indices(d, k, s->seed, stream, idx);
        }
        for (size_t j = 0; j < k; j++) vals[j] = x[idx[j]];
        v = vals;
    }
    sp_cmp_values vk = s->kind == SP_CMP_Q8 ? SP_CMP_VAL_Q8 : sparse ? s->values : SP_CMP_VAL_F32;
    size_t vbytes = vk == SP_CMP_VAL_F32 ? 4 * k : vk == SP_CMP_VAL_Q8 ? q8_bytes(k) : 4 + (k + 7) / 8;
    size_t cap = (sparse ? 10 * k : 0) + vbytes;
    raw = sp_malloc(cap ? cap : 1, err, "compressor payload");
    if (!raw) { st = SP_ENOMEM; goto done; }
    size_t n = 0;
    if (sparse) {
        for (size_t j = 0; j < k; j++) n += varint_put(raw + n, j ? idx[j] - idx[j - 1] - 1 : idx[0]);
    }
    if (vk == SP_CMP_VAL_F32) {
        for (size_t j = 0; j < k; j++, n += 4) put_f32(raw + n, v[j]);
    } else if (vk == SP_CMP_VAL_Q8) {
        n += q8_put(raw + n, v, k);
    } else {
        double a = 0.0; /* mean |x_S| in double: the error-minimising scale */
        for (size_t j = 0; j < k; j++) a += fabs((double)v[j]);
        put_f32(raw + n, k ? (float)(a / (double)k) : 0.0f);
        n += 4;
        memset(raw + n, 0, (k + 7) / 8);
        for (size_t j = 0; j < k; j++)
            if (v[j] < 0.0f) raw[n + j / 8] |= (uint8_t)(1u << (j % 8));
        n += (k + 7) / 8;
    }
    const uint8_t *payload = raw;
    size_t stored = n;
    uint8_t flags = 0;
    if (s->zstd && n > 0) {
        size_t zc = ZSTD_compressBound(n);
        z = sp_malloc(zc, err, "zstd buffer");
        if (!z) { st = SP_ENOMEM; goto done; }
        size_t r = ZSTD_compress(z, zc, raw, n, 3);
        if (ZSTD_isError(r)) {
            st = sp_err_set(err, SP_EINTERNAL, "compressor: zstd failed: %s", ZSTD_getErrorName(r));
            goto done;
        }
        if (r < n) { payload = z; stored = r; flags |= 1; }
    }
    if ((st = sp_cmp_buf_reserve(out, SP_CMP_HEADER_BYTES + stored, err)) != SP_OK) goto done;
    uint8_t *h = out->data + out->len;
    memcpy(h, CMP_MAGIC, 4);
    h[4] = (uint8_t)s->kind;
    h[5] = (uint8_t)vk;
    h[6] = flags;
    h[7] = 0;
    put_u64(h + 8, d);
    put_u64(h + 16, k);
    put_u64(h + 24, n);
    put_u64(h + 32, stored);
    put_u32(h + 40, (uint32_t)crc32(crc32(0L, Z_NULL, 0), payload, (uInt)stored));
    put_u32(h + 44, (uint32_t)crc32(crc32(0L, Z_NULL, 0), h, 44));
    memcpy(h + SP_CMP_HEADER_BYTES, payload, stored);
    out->len += SP_CMP_HEADER_BYTES + stored;
done:
    free(idx);
    free(vals);
    free(raw);
    free(z);
    return st;
}

/* ---- decode -------------------------------------------------------------------------------- */

sp_status sp_cmp_peek(const uint8_t *m, size_t avail, sp_cmp_header *h, size_t *msg_len,
                      sp_err *err) {
    SP_RETURN_IF(avail < SP_CMP_HEADER_BYTES, err, SP_ETRUNC,
                 "message: %zu bytes, shorter than its %d-byte header", avail, SP_CMP_HEADER_BYTES);
    SP_RETURN_IF(memcmp(m, CMP_MAGIC, 4) != 0, err, SP_EFORMAT, "message: bad magic (not SPC1)");
    SP_RETURN_IF(get_u32(m + 44) != (uint32_t)crc32(crc32(0L, Z_NULL, 0), m, 44), err, SP_EFORMAT,
                 "message: header checksum mismatch");
    h->kind = m[4];
    h->values = m[5];
    h->flags = m[6];
    h->d = get_u64(m + 8);
    h->k = get_u64(m + 16);
    h->raw_len = get_u64(m + 24);
    h->stored_len = get_u64(m + 32);
    h->crc = get_u32(m + 40);
    SP_RETURN_IF(h->kind > SP_CMP_Q8 || h->values > SP_CMP_VAL_SIGN || (h->flags & ~1u) || h->k > h->d,
                 err, SP_EFORMAT, "message: impossible kind %u / values %u / flags %u / k %" PRIu64,
                 h->kind, h->values, h->flags, h->k);
    SP_RETURN_IF(!(h->flags & 1) && h->raw_len != h->stored_len, err, SP_EFORMAT,
                 "message: raw and stored lengths differ without zstd");
    SP_RETURN_IF(h->stored_len > avail - SP_CMP_HEADER_BYTES, err, SP_ETRUNC,
                 "message: payload of %" PRIu64 " bytes, only %zu present", h->stored_len,
                 avail - SP_CMP_HEADER_BYTES);
    SP_RETURN_IF(h->crc != (uint32_t)crc32(crc32(0L, Z_NULL, 0), m + SP_CMP_HEADER_BYTES,
                                           (uInt)h->stored_len),
                 err, SP_EFORMAT, "message: payload checksum mismatch");
    *msg_len = SP_CMP_HEADER_BYTES + (size_t)h->stored_len;
    return SP_OK;
}

/* Decode the payload into idx[k] (sparse kinds) and val[k]. */
static sp_status decode_pairs(const sp_cmp_header *h, const uint8_t *p, uint64_t *idx, float *val,
                              sp_err *err) {
    size_t n = 0, L = (size_t)h->raw_len, k = (size_t)h->k;
    int sparse = h->kind == SP_CMP_TOPK || h->kind == SP_CMP_RANDK;
    SP_RETURN_IF(!sparse && h->k != h->d, err, SP_EFORMAT, "message: dense with k != d");
    if (sparse) {
        uint64_t prev = 0;
        for (size_t j = 0; j < k; j++) {
            uint64_t v = 0;
            int sh = 0;
            for (;;) {
                SP_RETURN_IF(n >= L || sh > 63, err, SP_EFORMAT, "message: index %zu cut off", j);
                uint8_t b = p[n++];
                v |= (uint64_t)(b & 0x7f) << sh;
                sh += 7;
                if (!(b & 0x80)) break;
            }
            uint64_t i = j ? prev + 1 + v : v;
            SP_RETURN_IF(i < v || i >= h->d, err, SP_EFORMAT, "message: index %zu out of range", j);
            idx[j] = prev = i;
        }
    }
    size_t need = h->values == SP_CMP_VAL_F32 ? 4 * k : h->values == SP_CMP_VAL_Q8 ? q8_bytes(k)
                  : 4 + (k + 7) / 8;
    SP_RETURN_IF(L - n != need, err, SP_EFORMAT, "message: %zu value bytes, expected %zu", L - n, need);
    if (h->values == SP_CMP_VAL_F32) {
        for (size_t j = 0; j < k; j++, n += 4) val[j] = get_f32(p + n);
    } else if (h->values == SP_CMP_VAL_Q8) {
        for (size_t b = 0; b < k; b += SP_CMP_Q8_BLOCK) {
            size_t e = b + SP_CMP_Q8_BLOCK < k ? b + SP_CMP_Q8_BLOCK : k;
            float step = get_f32(p + n);
            n += 4;
            for (size_t j = b; j < e; j++) val[j] = (float)(int8_t)p[n++] * step;
        }
    } else {
        float sc = get_f32(p + n);
        n += 4;
        for (size_t j = 0; j < k; j++) val[j] = (p[n + j / 8] >> (j % 8)) & 1 ? -sc : sc;
    }
    return SP_OK;
}

/* Peek, unzstd and decode into freshly allocated idx/val (idx NULL for dense kinds). */
static sp_status decode_alloc(const uint8_t *m, size_t avail, size_t d, sp_cmp_header *h,
                              uint64_t **idx, float **val, sp_err *err) {
    size_t len;
    *idx = NULL;
    *val = NULL;
    SP_FORWARD(sp_cmp_peek(m, avail, h, &len, err));
    SP_RETURN_IF(h->d != d, err, SP_EFORMAT, "message: length %" PRIu64 ", expected %zu", h->d, d);
    SP_RETURN_IF(h->raw_len > 16 * h->d + 64, err, SP_EFORMAT, "message: raw payload too long");
    const uint8_t *p = m + SP_CMP_HEADER_BYTES;
    uint8_t *un = NULL;
    sp_status st = SP_OK;
    if (h->flags & 1) {
        un = sp_malloc(h->raw_len ? (size_t)h->raw_len : 1, err, "zstd output");
        if (!un) return SP_ENOMEM;
        size_t r = ZSTD_decompress(un, (size_t)h->raw_len, p, (size_t)h->stored_len);
        if (ZSTD_isError(r) || r != h->raw_len) {
            free(un);
            return sp_err_set(err, SP_EFORMAT, "message: zstd payload does not decode to %" PRIu64
                              " bytes", h->raw_len);
        }
        p = un;
    }
    int sparse = h->kind == SP_CMP_TOPK || h->kind == SP_CMP_RANDK;
    size_t k = (size_t)h->k;
    *val = sp_malloc((k ? k : 1) * sizeof **val, err, "decoded values");
    if (sparse) *idx = sp_malloc((k ? k : 1) * sizeof **idx, err, "decoded indices");
    if (!*val || (sparse && !*idx)) st = SP_ENOMEM;
    if (st == SP_OK) st = decode_pairs(h, p, *idx, *val, err);
    free(un);
    if (st != SP_OK) {
        free(*idx);
        free(*val);
        *idx = NULL;
        *val = NULL;
    }
    return st;
}

sp_status sp_cmp_decode_add(const uint8_t *m, size_t avail, float scale, float *y, size_t d,
                            sp_err *err) {
    sp_cmp_header h;
    uint64_t *idx;
    float *val;
    SP_FORWARD(decode_alloc(m, avail, d, &h, &idx, &val, err));
    for (size_t j = 0; j < (size_t)h.k; j++) y[idx ? idx[j] : j] += scale * val[j];
    free(idx);
    free(val);
    return SP_OK;
}

sp_status sp_cmp_decode_add_f64(const uint8_t *m, size_t avail, double scale, double *y, size_t d,
                                sp_err *err) {
    sp_cmp_header h;
    uint64_t *idx;
    float *val;
    SP_FORWARD(decode_alloc(m, avail, d, &h, &idx, &val, err));
    for (size_t j = 0; j < (size_t)h.k; j++) y[idx ? idx[j] : j] += scale * (double)val[j];
    free(idx);
    free(val);
    return SP_OK;
}
