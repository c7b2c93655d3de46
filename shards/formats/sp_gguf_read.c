/* sp_gguf_read.c — GGUF layout reader and validator (see sp_gguf_read.h). The file is read
 * through one cursor that refuses to move past the end, so a count or length that lies is
 * caught before anything is allocated from it. */
#define _FILE_OFFSET_BITS 64
#include "shards/formats/sp_gguf_read.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_MAGIC 0x46554747u
#define MAX_DEPTH 2 /* arrays of arrays are legal; deeper nesting is not written by anyone */

/* ggml 0.5's type table: block length and bytes per block (ggml.c type_traits). */
static const struct { int block; int bytes; const char *name; } TRAITS[] = {
    [0] = {1, 4, "f32"},       [1] = {1, 2, "f16"},        [2] = {32, 18, "q4_0"},
    [3] = {32, 20, "q4_1"},    [6] = {32, 22, "q5_0"},     [7] = {32, 24, "q5_1"},
    [8] = {32, 34, "q8_0"},    [9] = {32, 36, "q8_1"},     [10] = {256, 84, "q2_K"},
    [11] = {256, 110, "q3_K"}, [12] = {256, 144, "q4_K"},  [13] = {256, 176, "q5_K"},
    [14] = {256, 210, "q6_K"}, [15] = {256, 292, "q8_K"},  [16] = {256, 66, "iq2_xxs"},
    [17] = {256, 74, "iq2_xs"}, [18] = {256, 98, "iq3_xxs"}, [19] = {256, 50, "iq1_s"},
    [20] = {32, 18, "iq4_nl"}, [21] = {256, 110, "iq3_s"}, [22] = {256, 82, "iq2_s"},
    [23] = {256, 136, "iq4_xs"}, [24] = {1, 1, "i8"},      [25] = {1, 2, "i16"},
    [26] = {1, 4, "i32"},      [27] = {1, 8, "i64"},       [28] = {1, 8, "f64"},
    [29] = {256, 56, "iq1_m"}, [30] = {1, 2, "bf16"},      [34] = {256, 54, "tq1_0"},
    [35] = {256, 66, "tq2_0"}, [39] = {32, 17, "mxfp4"},   [40] = {64, 36, "nvfp4"},
    [41] = {128, 18, "q1_0"},  [42] = {64, 18, "q2_0"},
};
#define N_TRAITS ((int)(sizeof TRAITS / sizeof TRAITS[0]))

void sp_gguf_type_traits(int type, int *block, size_t *block_bytes, const char **name) {
    int ok = type >= 0 && type < N_TRAITS && TRAITS[type].block > 0;
    if (block) *block = ok ? TRAITS[type].block : 0;
    if (block_bytes) *block_bytes = ok ? (size_t)TRAITS[type].bytes : 0;
    if (name) *name = ok ? TRAITS[type].name : NULL;
}

typedef struct {
    FILE *f;
    const char *path;
    uint64_t pos, size;
    sp_err *err;
} cursor;

static sp_status rd(cursor *c, void *dst, uint64_t n, const char *field) {
    SP_RETURN_IF(n > c->size - c->pos, c->err, SP_ETRUNC, "%s: %s: needs %llu bytes at offset "
                 "%llu, the file has %llu", c->path, field, (unsigned long long)n,
                 (unsigned long long)c->pos, (unsigned long long)c->size);
    if (dst) {
        SP_RETURN_IF(fread(dst, 1, (size_t)n, c->f) != n, c->err, SP_EIO, "%s: read failed at "
                     "offset %llu (%s)", c->path, (unsigned long long)c->pos, field);
    } else {
        SP_RETURN_IF(fseeko(c->f, (off_t)(c->pos + n), SEEK_SET) != 0, c->err, SP_EIO,
                     "%s: seek failed (%s)", c->path, field);
    }
    c->pos += n;
    return SP_OK;
}

static sp_status rd_u32(cursor *c, uint32_t *v, const char *field) {
    uint8_t b[4];
    SP_FORWARD(rd(c, b, 4, field));
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return SP_OK;
}

static sp_status rd_u64(cursor *c, uint64_t *v, const char *field) {
    uint32_t lo, hi;
    SP_FORWARD(rd_u32(c, &lo, field));
    SP_FORWARD(rd_u32(c, &hi, field));
    *v = (uint64_t)hi << 32 | lo;
    return SP_OK;
}

/* A string: into buf (cap bytes, NUL-terminated) when it fits, else skipped (buf = "" and
 * *too_long = 1). buf NULL: skipped. */
static sp_status rd_str(cursor *c, char *buf, size_t cap, int *too_long, const char *field) {
    uint64_t n;
    SP_FORWARD(rd_u64(c, &n, field));
    if (too_long) *too_long = 0;
    if (buf && n < cap) {
        SP_FORWARD(rd(c, buf, n, field));
        buf[n] = 0;
        SP_RETURN_IF(memchr(buf, 0, n) != NULL, c->err, SP_EFORMAT, "%s: %s holds a NUL byte",
                     c->path, field);
        return SP_OK;
    }
    if (buf) buf[0] = 0;
    if (too_long && buf) *too_long = 1;
    return rd(c, NULL, n, field);
}

static const int SCALAR_BYTES[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* Skip (or read small integers / strings of) one value of type vt; key names the field. */
static sp_status rd_value(cursor *c, uint32_t vt, int depth, const char *key, int64_t *ival,
                          char *sval, size_t scap) {
    char field[200];
    snprintf(field, sizeof field, "metadata '%s'", key);
    SP_RETURN_IF(vt > 12, c->err, SP_EFORMAT, "%s: %s: value type %u is not a GGUF type (0..12)",
                 c->path, field, vt);
    if (vt == 8) return rd_str(c, sval, scap, NULL, field);
    if (vt == 9) {
        uint32_t et;
        uint64_t n;
        SP_RETURN_IF(depth >= MAX_DEPTH, c->err, SP_EFORMAT, "%s: %s: arrays nested too deep",
                     c->path, field);
        SP_FORWARD(rd_u32(c, &et, field));
        SP_FORWARD(rd_u64(c, &n, field));
        SP_RETURN_IF(et > 12, c->err, SP_EFORMAT, "%s: %s: array element type %u is not a GGUF "
                     "type (0..12)", c->path, field, et);
        if (et != 8 && et != 9) {
            uint64_t eb = (uint64_t)SCALAR_BYTES[et];
            SP_RETURN_IF(n > (c->size - c->pos) / eb, c->err, SP_ETRUNC, "%s: %s: %llu elements "
                         "run past the end of the file", c->path, field, (unsigned long long)n);
            return rd(c, NULL, n * eb, field);
        }
        /* each element takes at least 8 bytes (a length or an element type + count) */
        SP_RETURN_IF(n > (c->size - c->pos) / 8, c->err, SP_ETRUNC, "%s: %s: %llu elements run "
                     "past the end of the file", c->path, field, (unsigned long long)n);
        for (uint64_t i = 0; i < n; i++) SP_FORWARD(rd_value(c, et, depth + 1, key, NULL, NULL, 0));
        return SP_OK;
    }
    uint8_t b[8] = {0};
    SP_FORWARD(rd(c, b, (uint64_t)SCALAR_BYTES[vt], field));
    if (ival) {
        uint64_t u = 0;
        for (int i = SCALAR_BYTES[vt] - 1; i >= 0; i--) u = u << 8 | b[i];
        *ival = (vt == 6 || vt == 12) ? -1 : (int64_t)u; /* floats: not an integer key */
        if (vt == 5 && (u & 0x80000000u)) *ival = -1;
    }
    return SP_OK;
}

static int cmp_off(const void *a, const void *b) {
    const sp_gguf_tensor *x = *(const sp_gguf_tensor *const *)a, *y = *(const sp_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static sp_status read_tensors(cursor *c, sp_gguf_info *g) {
    for (int64_t i = 0; i < g->n_tensors; i++) {
        sp_gguf_tensor *t = &g->t[i];
        char field[96];
        int too_long;
        snprintf(field, sizeof field, "tensor %lld name", (long long)i);
        SP_FORWARD(rd_str(c, t->name, sizeof t->name, &too_long, field));
        SP_RETURN_IF(too_long, c->err, SP_EFORMAT, "%s: %s is longer than 64 bytes", c->path, field);
        uint32_t nd, type;
        uint64_t off;
        snprintf(field, sizeof field, "tensor '%s' n_dims", t->name);
        SP_FORWARD(rd_u32(c, &nd, field));
        SP_RETURN_IF(nd < 1 || nd > 4, c->err, SP_EFORMAT, "%s: %s is %u (must be 1..4)", c->path,
                     field, nd);
        t->n_dims = (int)nd;
        uint64_t n = 1;
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t e;
            snprintf(field, sizeof field, "tensor '%s' ne[%u]", t->name, d);
            SP_FORWARD(rd_u64(c, &e, field));
            SP_RETURN_IF(e == 0 || e > ((uint64_t)1 << 40) || n > (UINT64_MAX >> 1) / e, c->err,
                         SP_EFORMAT, "%s: %s is %llu", c->path, field, (unsigned long long)e);
            t->ne[d] = (int64_t)e;
            n *= e;
        }
        snprintf(field, sizeof field, "tensor '%s' type", t->name);
        SP_FORWARD(rd_u32(c, &type, field));
        int blk;
        size_t bb;
        sp_gguf_type_traits((int)type, &blk, &bb, NULL);
        SP_RETURN_IF(type > 1000 || blk == 0, c->err, SP_EFORMAT, "%s: %s %u is not a ggml type",
                     c->path, field, type);
        SP_RETURN_IF(t->ne[0] % blk != 0, c->err, SP_EFORMAT, "%s: tensor '%s' ne[0] %lld is not "
                     "a multiple of its type's block (%d)", c->path, t->name, (long long)t->ne[0], blk);
        t->type = (int)type;
        t->nbytes = n / (uint64_t)blk * bb;
        snprintf(field, sizeof field, "tensor '%s' offset", t->name);
        SP_FORWARD(rd_u64(c, &off, field));
        SP_RETURN_IF(off % g->alignment != 0, c->err, SP_EFORMAT, "%s: %s %llu is not a multiple "
                     "of the alignment %u", c->path, field, (unsigned long long)off, g->alignment);
        t->offset = off;
        for (int64_t j = 0; j < i; j++)
            SP_RETURN_IF(!strcmp(g->t[j].name, t->name), c->err, SP_EFORMAT, "%s: tensor name '%s' "
                         "appears twice", c->path, t->name);
    }
    g->data_offset = (c->pos + g->alignment - 1) / g->alignment * g->alignment;
    SP_RETURN_IF(g->n_tensors > 0 && g->data_offset > c->size, c->err, SP_ETRUNC, "%s: the data "
                 "section starts at %llu, past the end of the file (%llu bytes)", c->path,
                 (unsigned long long)g->data_offset, (unsigned long long)c->size);
    /* extents: inside the data section and disjoint (checked in offset order) */
    const sp_gguf_tensor **by = sp_malloc((size_t)(g->n_tensors ? g->n_tensors : 1) * sizeof *by,
                                          c->err, "gguf tensor order");
    if (!by) return SP_ENOMEM;
    for (int64_t i = 0; i < g->n_tensors; i++) by[i] = &g->t[i];
    qsort(by, (size_t)g->n_tensors, sizeof *by, cmp_off);
    sp_status st = SP_OK;
    uint64_t room = c->size - g->data_offset;
    for (int64_t i = 0; i < g->n_tensors && st == SP_OK; i++) {
        const sp_gguf_tensor *t = by[i];
        if (t->offset > room || t->nbytes > room - t->offset)
            st = sp_err_set(c->err, SP_ETRUNC, "%s: tensor '%s' data (%llu bytes at %llu) runs past "
                            "the end of the file", c->path, t->name, (unsigned long long)t->nbytes,
                            (unsigned long long)t->offset);
        else if (i > 0 && by[i - 1]->offset + by[i - 1]->nbytes > t->offset)
            st = sp_err_set(c->err, SP_EFORMAT, "%s: tensor '%s' offset %llu overlaps tensor '%s'",
                            c->path, t->name, (unsigned long long)t->offset, by[i - 1]->name);
    }
    free(by);
    for (int64_t i = 0; i < g->n_tensors; i++) g->t[i].offset += g->data_offset;
    return st;
}

static sp_status read_all(cursor *c, sp_gguf_info *g) {
    uint32_t magic;
    uint64_t nt, nkv;
    SP_FORWARD(rd_u32(c, &magic, "GGUF header magic"));
    SP_RETURN_IF(magic != GGUF_MAGIC, c->err, SP_EFORMAT, "%s: GGUF header magic is 0x%08x, not "
                 "\"GGUF\" (not a GGUF file)", c->path, magic);
    SP_FORWARD(rd_u32(c, &g->version, "GGUF header version"));
    SP_RETURN_IF(g->version != 2 && g->version != 3, c->err, SP_EFORMAT, "%s: GGUF header version "
                 "is %u (2 or 3 are read)", c->path, g->version);
    SP_FORWARD(rd_u64(c, &nt, "GGUF header n_tensors"));
    SP_FORWARD(rd_u64(c, &nkv, "GGUF header n_kv"));
    /* a tensor info takes at least 8+4+8+4+8 bytes, a key/value at least 8+4+1 */
    SP_RETURN_IF(nt > c->size / 32, c->err, SP_EFORMAT, "%s: GGUF header n_tensors %llu does not "
                 "fit a file of %llu bytes", c->path, (unsigned long long)nt, (unsigned long long)c->size);
    SP_RETURN_IF(nkv > c->size / 13, c->err, SP_EFORMAT, "%s: GGUF header n_kv %llu does not fit a "
                 "file of %llu bytes", c->path, (unsigned long long)nkv, (unsigned long long)c->size);
    g->alignment = 32;
    g->file_type = -1;
    for (uint64_t i = 0; i < nkv; i++) {
        char key[256], field[64];
        int too_long;
        uint32_t vt;
        snprintf(field, sizeof field, "metadata key %llu", (unsigned long long)i);
        SP_FORWARD(rd_str(c, key, sizeof key, &too_long, field));
        if (too_long) snprintf(key, sizeof key, "(key %llu)", (unsigned long long)i);
        SP_FORWARD(rd_u32(c, &vt, field));
        int64_t iv = -1;
        char sv[64] = "";
        SP_FORWARD(rd_value(c, vt, 0, key, &iv, sv, sizeof sv));
        if (!strcmp(key, "general.alignment")) {
            SP_RETURN_IF(vt != 4 || iv <= 0 || (iv & (iv - 1)) != 0, c->err, SP_EFORMAT,
                         "%s: metadata 'general.alignment' must be a u32 power of two", c->path);
            g->alignment = (uint32_t)iv;
        } else if (!strcmp(key, "general.file_type") && vt <= 5) {
            g->file_type = (int)iv;
        } else if (!strcmp(key, "general.architecture") && vt == 8) {
            /* A display field: keep at most sizeof arch - 1 bytes of the name. */
            size_t n = strnlen(sv, sizeof g->arch - 1);
            memcpy(g->arch, sv, n);
            g->arch[n] = '\0';
        }
    }
    g->n_tensors = (int64_t)nt;
    g->t = sp_calloc(nt ? nt : 1, sizeof *g->t, c->err, "gguf tensor infos");
    if (!g->t) return SP_ENOMEM;
    return read_tensors(c, g);
}

sp_status sp_gguf_read_info(const char *path, sp_gguf_info *out, sp_err *err) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    SP_RETURN_IF(!f, err, SP_EIO, "%s: cannot open (%s)", path, strerror(errno));
    cursor c = {f, path, 0, 0, err};
    sp_status st = SP_OK;
    if (fseeko(f, 0, SEEK_END) != 0 || (c.size = (uint64_t)ftello(f)) == (uint64_t)-1 ||
        fseeko(f, 0, SEEK_SET) != 0)
        st = sp_err_set(err, SP_EIO, "%s: cannot find its size (%s)", path, strerror(errno));
    out->file_bytes = c.size;
    if (st == SP_OK) st = read_all(&c, out);
    fclose(f);
    if (st != SP_OK) sp_gguf_info_free(out);
    return st;
}

void sp_gguf_info_free(sp_gguf_info *g) {
    if (!g) return;
    free(g->t);
    g->t = NULL;
    g->n_tensors = 0;
}

const sp_gguf_tensor *sp_gguf_info_find(const sp_gguf_info *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->t[i].name, name)) return &g->t[i];
    return NULL;
}
