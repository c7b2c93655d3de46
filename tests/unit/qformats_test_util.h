/* qformats_test_util.h — helpers shared by test_qformats.c and test_qformats_export.c
 * (header-only; every function is static inline so a test that skips one stays warning-free).
 */
#ifndef QFORMATS_TEST_UTIL_H
#define QFORMATS_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka after the standard headers it needs */
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <hdf5.h>
#include <zlib.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/sp_pack.h"
#include "kernels/sp_quant.h"
#include "shards/formats/sp_gptq_export.h"
#include "shards/sp_model.h"
#include "shards/formats/sp_qcontainer.h"
#include "shards/sp_safetensors.h"


/* ---- helpers ---------------------------------------------------------------------------- */

static uint64_t rng_state = 88172645463325252ull;
static inline uint32_t rnd(void) { /* xorshift64 */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static inline void tmpdir(char *buf, size_t cap) {
    const char *base = getenv("TMPDIR");
    snprintf(buf, cap, "%s/sp_qf_XXXXXX", base && base[0] ? base : "/tmp");
    assert_non_null(mkdtemp(buf));
}

static inline void rm_tree(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char sub[4096];
            struct stat sb;
            int n = snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            if (n < 0 || (size_t)n >= sizeof sub) continue;
            if (lstat(sub, &sb) == 0 && S_ISDIR(sb.st_mode)) rm_tree(sub);
            else unlink(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

static inline unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static inline void spit(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static inline void copy_file(const char *from, const char *to) {
    size_t n = 0;
    unsigned char *b = slurp(from, &n);
    assert_non_null(b);
    spit(to, b, n);
    free(b);
}

/* After a test rewrites a dataset's values on purpose, store their CRC in its crc32
 * attribute (container version 2), as a writer of such a file would: the reader's value
 * checks, not the checksum, are then what the test exercises. */
static inline void rewrite_crc(hid_t d, const void *buf, size_t nbytes) {
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), buf, (uInt)nbytes);
    hid_t a = H5Aopen(d, "crc32", H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, H5T_NATIVE_UINT32, &crc) >= 0);
    H5Aclose(a);
}

static inline void path_join(char *buf, size_t cap, const char *a, const char *b) {
    snprintf(buf, cap, "%s/%s", a, b);
}

#define ASSERT_OK(expr)                                                        \
    do {                                                                       \
        sp_err e_ = {0};                                                       \
        sp_status s_ = (expr);                                                 \
        if (s_ != SP_OK) fail_msg("%s -> %d: %s", #expr, (int)s_, e_.msg);     \
    } while (0)
/* The expression uses `e_` as its sp_err: write ASSERT_OK(f(..., &e_)). */

/* Expect status code and a message containing every given fragment. */
static inline void expect_err(sp_status got, const sp_err *e, sp_status want, const char *frag1,
                       const char *frag2) {
    if (got != want) fail_msg("status %d, expected %d (%s)", (int)got, (int)want, e->msg);
    if (frag1 && !strstr(e->msg, frag1)) fail_msg("message lacks \"%s\": %s", frag1, e->msg);
    if (frag2 && !strstr(e->msg, frag2)) fail_msg("message lacks \"%s\": %s", frag2, e->msg);
}

/* A random quantized layer with fp16-representable scales. */
static inline void random_qlayer(sp_qlayer *q, int rows, int cols, int bits, int gs, int sym) {
    sp_err e = {0};
    assert_int_equal(sp_qlayer_alloc(q, rows, cols, bits, gs, sym, &e), SP_OK);
    const unsigned lim = 1u << bits;
    for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++) q->codes[i] = (uint8_t)(rnd() % lim);
    for (size_t i = 0; i < (size_t)rows * (size_t)q->n_groups; i++) {
        q->zeros[i] = sym ? (uint8_t)(lim / 2) : (uint8_t)(rnd() % lim);
        q->scales[i] = ldexpf((float)(1024 + rnd() % 1024), -(int)(rnd() % 10) - 10);
    }
}

static inline void assert_qlayer_equal(const sp_qlayer *a, const sp_qlayer *b) {
    assert_int_equal(a->rows, b->rows);
    assert_int_equal(a->cols, b->cols);
    assert_int_equal(a->bits, b->bits);
    assert_int_equal(a->group_size, b->group_size);
    assert_int_equal(a->n_groups, b->n_groups);
    assert_int_equal(a->sym, b->sym);
    size_t nc = (size_t)a->rows * (size_t)a->cols, ng = (size_t)a->rows * (size_t)a->n_groups;
    assert_memory_equal(a->codes, b->codes, nc);
    assert_memory_equal(a->zeros, b->zeros, ng);
    assert_memory_equal(a->scales, b->scales, ng * sizeof(float));
    assert_memory_equal(a->g_idx, b->g_idx, (size_t)a->cols * sizeof(int32_t));
}

/* ---- the container ---------------------------------------------------------------------- */

static const char *const MOD_A = "model.layers.0.self_attn.q_proj";
static const char *const MOD_B = "model.layers.0.mlp.down_proj";

typedef struct {
    sp_qlayer a3, a4, b2, b8;
    float norm[10], emb[15];
} small_set;

static inline void small_set_make(small_set *s) {
    rng_state = 12345;
    random_qlayer(&s->a3, 7, 45, 3, 16, 0);
    random_qlayer(&s->a4, 7, 45, 4, 16, 0);
    random_qlayer(&s->b2, 5, 33, 2, -1, 1);
    random_qlayer(&s->b8, 5, 33, 8, -1, 1);
    for (int i = 0; i < 10; i++) s->norm[i] = (float)i * 0.25f - 1.0f;
    for (int i = 0; i < 15; i++) s->emb[i] = (float)(rnd() % 1000) / 7.0f;
}

static inline void small_set_free(small_set *s) {
    sp_qlayer_free(&s->a3);
    sp_qlayer_free(&s->a4);
    sp_qlayer_free(&s->b2);
    sp_qlayer_free(&s->b8);
}

static const sp_qcontainer_meta small_meta = {
    .default_bits = 4, .group_size = 16, .sym = 0, .method = "rtn", .n_levels = 4,
    .levels = {2, 3, 4, 8}};

static inline void small_write(const char *path, const small_set *s, int force) {
    sp_qcontainer *c = NULL;
    ASSERT_OK(sp_qcontainer_create(&c, path, &small_meta, force, &e_));
    const int64_t sn[2] = {10, 1}, se[2] = {5, 3};
    ASSERT_OK(sp_qcontainer_put_dense(c, "model.norm.weight", 1, sn, s->norm, &e_));
    ASSERT_OK(sp_qcontainer_put_dense(c, "model.embed_tokens.weight", 2, se, s->emb, &e_));
    ASSERT_OK(sp_qcontainer_put_qlayer(c, MOD_A, &s->a4, &e_));
    ASSERT_OK(sp_qcontainer_put_qlayer(c, MOD_A, &s->a3, &e_));
    ASSERT_OK(sp_qcontainer_put_qlayer(c, MOD_B, &s->b2, &e_));
    ASSERT_OK(sp_qcontainer_put_qlayer(c, MOD_B, &s->b8, &e_));
    ASSERT_OK(sp_qcontainer_set_selected(c, MOD_B, 8, &e_));
    ASSERT_OK(sp_qcontainer_close(c, &e_));
}

#endif
