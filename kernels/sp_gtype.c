/* sp_gtype.c — ggml block types (see sp_gtype.h). Written from the GGUF spec's type table
 * and the block layouts; the scale choices are shardpress's own. */
#include "kernels/sp_gtype.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "shards/sp_model.h" /* sp_f32_to_f16 / sp_f16_to_f32 */

typedef struct {
    int type;
    const char *name;
    int block;
    size_t bytes;
    double bpw;
} gtype_info;

static const gtype_info TYPES[] = {
    {SP_GT_F32, "F32", 1, 4, 32.0},         {SP_GT_F16, "F16", 1, 2, 16.0},
    {SP_GT_Q4_0, "Q4_0", 32, 18, 4.5},      {SP_GT_Q4_1, "Q4_1", 32, 20, 5.0},
    {SP_GT_Q5_0, "Q5_0", 32, 22, 5.5},      {SP_GT_Q5_1, "Q5_1", 32, 24, 6.0},
    {SP_GT_Q8_0, "Q8_0", 32, 34, 8.5},      {SP_GT_Q2_K, "Q2_K", 256, 84, 2.625},
    {SP_GT_Q3_K, "Q3_K", 256, 110, 3.4375}, {SP_GT_Q4_K, "Q4_K", 256, 144, 4.5},
    {SP_GT_Q5_K, "Q5_K", 256, 176, 5.5},    {SP_GT_Q6_K, "Q6_K", 256, 210, 6.5625},
    {SP_GT_Q1_0, "Q1_0", 128, 18, 1.125},   {SP_GT_Q2_0, "Q2_0", 64, 18, 2.25},
};
#define N_TYPES ((int)(sizeof TYPES / sizeof TYPES[0]))

static const gtype_info *info(int type) {
    for (int i = 0; i < N_TYPES; i++)
        if (TYPES[i].type == type) return &TYPES[i];
    return NULL;
}

const char *sp_gtype_name(int type) {
    const gtype_info *t = info(type);
    return t ? t->name : NULL;
}

int sp_gtype_parse(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < N_TYPES; i++) {
        const char *a = TYPES[i].name, *b = name;
        while (*a && *b && (*a == *b || (*a >= 'A' && *a <= 'Z' && *a + 32 == *b))) a++, b++;
        if (!*a && !*b) return TYPES[i].type;
    }
    return -1;
}

size_t sp_gtype_names(char *buf, size_t cap, const char *sep, int quantized_only) {
    size_t n = 0;
    if (cap) buf[0] = '\0';
    for (int i = 0; i < N_TYPES; i++) {
        if (quantized_only && TYPES[i].block == 1) continue;
        int w = snprintf(buf ? buf + (n < cap ? n : cap) : NULL, n < cap ? cap - n : 0, "%s%s",
                         n ? sep : "", TYPES[i].name);
        if (w > 0) n += (size_t)w;
    }
    return n;
}

int sp_gtype_block(int type) {
    const gtype_info *t = info(type);
    return t ? t->block : 0;
}

size_t sp_gtype_block_bytes(int type) {
    const gtype_info *t = info(type);
    return t ? t->bytes : 0;
}

size_t sp_gtype_row_bytes(int type, int64_t n) {
    const gtype_info *t = info(type);
    if (!t || n <= 0 || n % t->block) return 0;
    return (size_t)(n / t->block) * t->bytes;
}

int sp_gtype_is_level(int type) {
    return type == SP_GT_Q4_1 || type == SP_GT_Q5_1 || type == SP_GT_Q2_K ||
           type == SP_GT_Q3_K || type == SP_GT_Q4_K || type == SP_GT_Q5_K || type == SP_GT_Q6_K ||
           type == SP_GT_Q1_0 || type == SP_GT_Q2_0;
}

void sp_gtype_level(int type, int *bits, int *group, int *sym) {
    int b = 0, g = 0, y = 0;
    switch (type) {
    case SP_GT_Q4_0: b = 4, g = 32, y = 1; break;
    case SP_GT_Q5_0: b = 5, g = 32, y = 1; break;
    case SP_GT_Q8_0: b = 8, g = 32, y = 1; break;
    case SP_GT_Q4_1: b = 4, g = 32; break;
    case SP_GT_Q5_1: b = 5, g = 32; break;
    case SP_GT_Q2_K: b = 2, g = 16; break;
    case SP_GT_Q3_K: b = 3, g = 16, y = 1; break;
    case SP_GT_Q4_K: b = 4, g = 32; break;
    case SP_GT_Q5_K: b = 5, g = 32; break;
    case SP_GT_Q6_K: b = 6, g = 16, y = 1; break;
    case SP_GT_Q2_0: b = 2, g = 64; break;  /* zero point 1, not 2^(b−1): not "sym" */
    case SP_GT_Q1_0: b = 1, g = 128; break; /* y = 2d·q − d: an offset m = −d        */
    default: break;
    }
    if (bits) *bits = b;
    if (group) *group = g;
    if (sym) *sym = y;
}

int sp_gtype_has_min(int type) {
    return type == SP_GT_Q4_1 || type == SP_GT_Q5_1 || type == SP_GT_Q2_K ||
           type == SP_GT_Q4_K || type == SP_GT_Q5_K || type == SP_GT_Q1_0;
}

int sp_gtype_zero(int type) {
    int b, g, y;
    if (type == SP_GT_Q2_0) return 1;
    sp_gtype_level(type, &b, &g, &y);
    return b && y ? 1 << (b - 1) : 0;
}

double sp_gtype_bpw(int type) {
    const gtype_info *t = info(type);
    return t ? t->bpw : 0.0;
}

/* ---- little helpers -------------------------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static float h2f(const uint8_t *p) { return sp_f16_to_f32(get16(p)); }
/* nearest fp16 value of x, as a float; clamped to the finite range */
static float f16r(float x) {
    if (x > 65504.0f) x = 65504.0f;
    if (x < -65504.0f) x = -65504.0f;
    return sp_f16_to_f32(sp_f32_to_f16(x));
}
static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
/* rne(x / d) clamped to [lo, hi]; d == 0 gives 0 */
static int qround(float x, float d, int lo, int hi) {
    if (d == 0.0f) return clampi(0, lo, hi);
    float q = rintf(x / d);
    if (!(q >= (float)lo)) return lo; /* also NaN */
    if (q > (float)hi) return hi;
    return (int)q;
}
/* the value of largest magnitude (first on ties), with its sign */
static float absmax_signed(const float *x, int n) {
    float v = 0.0f, a = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > a) a = fabsf(x[i]), v = x[i];
    return v;
}

/* Legacy 4/5-bit code placement: value j in the low nibble of qs[j], value j+16 high; the
 * fifth bit of value j is bit j of qh. */
static void put_codes_32(uint8_t *qs, uint8_t *qh, const int *q) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 15) | ((q[j + 16] & 15) << 4));
        h |= (uint32_t)((q[j] >> 4) & 1) << j;
        h |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    if (qh)
        for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(h >> (8 * k));
}
static void get_codes_32(int *q, const uint8_t *qs, const uint8_t *qh) {
    uint32_t h = qh ? (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
                          (uint32_t)qh[3] << 24
                    : 0;
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 15) | (int)(((h >> j) & 1) << 4);
        q[j + 16] = (qs[j] >> 4) | (int)(((h >> (j + 16)) & 1) << 4);
    }
}

/* ---- K-quant scale packing (12 bytes: 8 six-bit scales and 8 six-bit mins) --------------------
 * j < 4:  scales[j] low 6 bits = sc_j, scales[j+4] low 6 bits = m_j
 * j >= 4: scales[j+4] low nibble = sc_j & 15, high nibble = m_j & 15; the top two bits of
 *         sc_j go into bits 6-7 of scales[j−4], those of m_j into bits 6-7 of scales[j].   */
static void k4_put_scales(uint8_t *s, const int *sc, const int *m) {
    memset(s, 0, 12);
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] & 63);
        s[j + 4] = (uint8_t)(m[j] & 63);
    }
    for (int j = 4; j < 8; j++) {
        s[j + 4] = (uint8_t)((sc[j] & 15) | ((m[j] & 15) << 4));
        s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
        s[j] |= (uint8_t)((m[j] >> 4) << 6);
    }
}
static void k4_get_scale(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* ---- quantizers, one block each: parameters and codes, then sp_gtype_put_block ----------- */

static void q_sym32(const float *x, uint8_t *b, int bits, int type) {
    const int z = 1 << (bits - 1), maxq = (1 << bits) - 1;
    sp_gtype_params p = {0};
    p.d = f16r(absmax_signed(x, 32) / (float)-z);
    int q[32];
    for (int j = 0; j < 32; j++) q[j] = qround(x[j], p.d, -z, maxq - z) + z;
    sp_gtype_put_block(type, &p, q, b);
}

static void q_asym32(const float *x, uint8_t *b, int bits, int type) {
    const int maxq = (1 << bits) - 1;
    float lo = x[0], hi = x[0];
    for (int j = 1; j < 32; j++) lo = fminf(lo, x[j]), hi = fmaxf(hi, x[j]);
    sp_gtype_params p = {0};
    p.d = f16r((hi - lo) / (float)maxq), p.dmin = f16r(lo);
    int q[32];
    for (int j = 0; j < 32; j++) q[j] = qround(x[j] - p.dmin, p.d, 0, maxq);
    sp_gtype_put_block(type, &p, q, b);
}

static void q_q8_0(const float *x, uint8_t *b) {
    sp_gtype_params p = {0};
    p.d = f16r(fabsf(absmax_signed(x, 32)) / 127.0f);
    int q[32];
    for (int j = 0; j < 32; j++) q[j] = qround(x[j], p.d, -128, 127) + 128;
    sp_gtype_put_block(SP_GT_Q8_0, &p, q, b);
}

/* Q4_K (bits 4) and Q5_K (bits 5): block 256 = 8 sub-blocks of 32. */
static void q_k45(const float *x, uint8_t *b, int bits) {
    const int maxq = (1 << bits) - 1;
    float s[8], mn[8], smax = 0.0f, mmax = 0.0f;
    for (int j = 0; j < 8; j++) {
        const float *v = x + 32 * j;
        float lo = 0.0f, hi = v[0];
        for (int l = 0; l < 32; l++) lo = fminf(lo, v[l]), hi = fmaxf(hi, v[l]);
        s[j] = (hi - lo) / (float)maxq;
        mn[j] = -lo;
        smax = fmaxf(smax, s[j]);
        mmax = fmaxf(mmax, mn[j]);
    }
    sp_gtype_params p = {0};
    p.d = f16r(smax / 63.0f), p.dmin = f16r(mmax / 63.0f);
    int q[256];
    for (int j = 0; j < 8; j++) {
        p.sc[j] = qround(s[j], p.d, 0, 63);
        p.mm[j] = qround(mn[j], p.dmin, 0, 63);
        const float d1 = p.d * (float)p.sc[j], m1 = p.dmin * (float)p.mm[j];
        for (int l = 0; l < 32; l++) q[32 * j + l] = qround(x[32 * j + l] + m1, d1, 0, maxq);
    }
    sp_gtype_put_block(bits == 5 ? SP_GT_Q5_K : SP_GT_Q4_K, &p, q, b);
}

/* Q6_K: 256 = 16 sub-blocks of 16 (layout in sp_gtype_put_block). */
static void q_q6_k(const float *x, uint8_t *b) {
    float s[16], smax = 0.0f, sv = 0.0f;
    for (int j = 0; j < 16; j++) {
        s[j] = absmax_signed(x + 16 * j, 16) / -32.0f;
        if (fabsf(s[j]) > smax) smax = fabsf(s[j]), sv = s[j];
    }
    sp_gtype_params p = {0};
    p.d = f16r(sv / -128.0f);
    int q[256];
    for (int j = 0; j < 16; j++) {
        p.sc[j] = qround(s[j], p.d, -128, 127);
        const float d1 = p.d * (float)p.sc[j];
        for (int l = 0; l < 16; l++) q[16 * j + l] = qround(x[16 * j + l], d1, -32, 31) + 32;
    }
    sp_gtype_put_block(SP_GT_Q6_K, &p, q, b);
}

/* 2-bit codes of a 256 block (Q2_K, and Q3_K's low bits): see sp_gtype.h. */
static void put_2bit(uint8_t *qs, const int *q) {
    memset(qs, 0, 64);
    for (int v = 0; v < 256; v++) {
        const int h = v / 128, j = (v % 128) / 32, l = v % 32;
        qs[32 * h + l] |= (uint8_t)((q[v] & 3) << (2 * j));
    }
}
static int get_2bit(const uint8_t *qs, int v) {
    const int h = v / 128, j = (v % 128) / 32, l = v % 32;
    return (qs[32 * h + l] >> (2 * j)) & 3;
}
/* Q3_K's 16 six-bit scales u_i in 12 bytes (sp_gtype.h). */
static void k3_put_scales(uint8_t *s, const int *u) {
    memset(s, 0, 12);
    for (int i = 0; i < 16; i++) {
        s[i % 8] |= (uint8_t)((u[i] & 15) << (i < 8 ? 0 : 4));
        s[8 + i % 4] |= (uint8_t)(((u[i] >> 4) & 3) << (2 * (i / 4)));
    }
}
static int k3_get_scale(const uint8_t *s, int i) {
    int lo = i < 8 ? s[i] & 15 : s[i - 8] >> 4;
    return lo | (((s[8 + i % 4] >> (2 * (i / 4))) & 3) << 4);
}

void sp_gtype_put_block(int type, const sp_gtype_params *p, const int *q, uint8_t *b) {
    switch (type) {
    case SP_GT_Q4_0:
    case SP_GT_Q5_0: {
        const int five = type == SP_GT_Q5_0;
        put16(b, sp_f32_to_f16(p->d));
        put_codes_32(b + 2 + (five ? 4 : 0), five ? b + 2 : NULL, q);
        break;
    }
    case SP_GT_Q8_0:
        put16(b, sp_f32_to_f16(p->d));
        for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)(q[j] - 128);
        break;
    case SP_GT_Q4_1:
    case SP_GT_Q5_1: {
        const int five = type == SP_GT_Q5_1;
        put16(b, sp_f32_to_f16(p->d));
        put16(b + 2, sp_f32_to_f16(p->dmin));
        put_codes_32(b + 4 + (five ? 4 : 0), five ? b + 4 : NULL, q);
        break;
    }
    case SP_GT_Q4_K:
    case SP_GT_Q5_K: {
        const int five = type == SP_GT_Q5_K;
        put16(b, sp_f32_to_f16(p->d));
        put16(b + 2, sp_f32_to_f16(p->dmin));
        k4_put_scales(b + 4, p->sc, p->mm);
        uint8_t *qh = five ? b + 16 : NULL, *qs = b + 16 + (five ? 32 : 0);
        if (qh) memset(qh, 0, 32);
        for (int j = 0; j < 8; j += 2)
            for (int l = 0; l < 32; l++) {
                const int a = q[32 * j + l], c = q[32 * (j + 1) + l];
                qs[16 * j + l] = (uint8_t)((a & 15) | ((c & 15) << 4));
                if (qh) qh[l] |= (uint8_t)(((a >> 4) << j) | ((c >> 4) << (j + 1)));
            }
        break;
    }
    case SP_GT_Q6_K: {
        uint8_t *ql = b, *qh = b + 128;
        memset(ql, 0, 192);
        for (int half = 0; half < 2; half++) {
            const int *v = q + 128 * half;
            uint8_t *L = ql + 64 * half, *H = qh + 32 * half;
            for (int l = 0; l < 32; l++) {
                const int c0 = v[l], c1 = v[l + 32], c2 = v[l + 64], c3 = v[l + 96];
                L[l] = (uint8_t)((c0 & 15) | ((c2 & 15) << 4));
                L[l + 32] = (uint8_t)((c1 & 15) | ((c3 & 15) << 4));
                H[l] = (uint8_t)((c0 >> 4) | ((c1 >> 4) << 2) | ((c2 >> 4) << 4) | ((c3 >> 4) << 6));
            }
        }
        for (int j = 0; j < 16; j++) b[192 + j] = (uint8_t)(int8_t)p->sc[j];
        put16(b + 208, sp_f32_to_f16(p->d));
        break;
    }
    case SP_GT_Q2_K:
        for (int j = 0; j < 16; j++) b[j] = (uint8_t)((p->sc[j] & 15) | ((p->mm[j] & 15) << 4));
        put_2bit(b + 16, q);
        put16(b + 80, sp_f32_to_f16(p->d));
        put16(b + 82, sp_f32_to_f16(p->dmin));
        break;
    case SP_GT_Q3_K: {
        int u[16];
        for (int j = 0; j < 16; j++) u[j] = p->sc[j] + 32;
        memset(b, 0, 32); /* hmask */
        for (int v = 0; v < 256; v++) {
            const int h = v / 128, j = (v % 128) / 32, l = v % 32;
            b[l] |= (uint8_t)(((q[v] >> 2) & 1) << (4 * h + j));
        }
        put_2bit(b + 32, q);
        k3_put_scales(b + 96, u);
        put16(b + 108, sp_f32_to_f16(p->d));
        break;
    }
    case SP_GT_Q2_0: /* value j: bits 2(j % 4) .. 2(j % 4) + 1 of qs[j / 4] */
        put16(b, sp_f32_to_f16(p->d));
        memset(b + 2, 0, 16);
        for (int j = 0; j < 64; j++) b[2 + j / 4] |= (uint8_t)((q[j] & 3) << (2 * (j % 4)));
        break;
    case SP_GT_Q1_0: /* value j: bit j % 8 of qs[j / 8]; set means +d. A zero d is written as
                      * −0 with every bit clear: ggml reads −(−0) = +0, the level's s·q + m. */
        put16(b, p->d == 0.0f ? (uint16_t)0x8000 : sp_f32_to_f16(p->d));
        memset(b + 2, 0, 16);
        for (int j = 0; j < 128 && p->d != 0.0f; j++) b[2 + j / 8] |= (uint8_t)((q[j] & 1) << (j % 8));
        break;
    default: break;
    }
}

/* Q2_K / Q3_K / Q2_0 / Q1_0 by round-to-nearest: the weighted search with unit weights
 * (sp_gtype_level.c). */
static void q_k23(int type, const float *x, uint8_t *b) {
    sp_gtype_params p;
    sp_gtype_block_params(type, x, NULL, &p);
    int bits, g, y, q[256];
    sp_gtype_level(type, &bits, &g, &y);
    for (int v = 0; v < sp_gtype_block(type); v++) {
        float dq;
        q[v] = sp_gtype_code(x[v], p.scale[v / g], p.zero[v / g], p.min[v / g],
                             (1 << bits) - 1, &dq);
    }
    sp_gtype_put_block(type, &p, q, b);
}

sp_status sp_gtype_quantize_row(int type, const float *x, int64_t n, void *dst, sp_err *err) {
    const gtype_info *t = info(type);
    SP_RETURN_IF(!t, err, SP_EINVAL, "gguf: unknown tensor type %d", type);
    SP_RETURN_IF(n <= 0 || n % t->block, err, SP_EINVAL,
                 "gguf: a row of %lld values is not a multiple of %s's block of %d",
                 (long long)n, t->name, t->block);
    uint8_t *b = dst;
    if (type == SP_GT_F32) {
        memcpy(dst, x, (size_t)n * 4);
        return SP_OK;
    }
    if (type == SP_GT_F16) {
        for (int64_t i = 0; i < n; i++) put16(b + 2 * i, sp_f32_to_f16(x[i]));
        return SP_OK;
    }
    for (int64_t i = 0; i < n / t->block; i++, b += t->bytes, x += t->block) {
        switch (type) {
        case SP_GT_Q4_0: q_sym32(x, b, 4, SP_GT_Q4_0); break;
        case SP_GT_Q5_0: q_sym32(x, b, 5, SP_GT_Q5_0); break;
        case SP_GT_Q4_1: q_asym32(x, b, 4, SP_GT_Q4_1); break;
        case SP_GT_Q5_1: q_asym32(x, b, 5, SP_GT_Q5_1); break;
        case SP_GT_Q8_0: q_q8_0(x, b); break;
        case SP_GT_Q4_K: q_k45(x, b, 4); break;
        case SP_GT_Q5_K: q_k45(x, b, 5); break;
        case SP_GT_Q2_K: q_k23(SP_GT_Q2_K, x, b); break;
        case SP_GT_Q3_K: q_k23(SP_GT_Q3_K, x, b); break;
        case SP_GT_Q2_0: q_k23(SP_GT_Q2_0, x, b); break;
        case SP_GT_Q1_0: q_k23(SP_GT_Q1_0, x, b); break;
        default: q_q6_k(x, b); break;
        }
    }
    return SP_OK;
}

/* ---- dequantizers ---------------------------------------------------------------------------- */

sp_status sp_gtype_dequant_row(int type, const void *src, int64_t n, float *y, sp_err *err) {
    const gtype_info *t = info(type);
    SP_RETURN_IF(!t, err, SP_EUNSUPPORTED,
                 "gguf: cannot dequantize type %d", type);
    SP_RETURN_IF(n <= 0 || n % t->block, err, SP_EINVAL,
                 "gguf: a row of %lld values is not a multiple of %s's block of %d",
                 (long long)n, t->name, t->block);
    const uint8_t *b = src;
    if (type == SP_GT_F32) {
        memcpy(y, src, (size_t)n * 4);
        return SP_OK;
    }
    if (type == SP_GT_F16) {
        for (int64_t i = 0; i < n; i++) y[i] = h2f(b + 2 * i);
        return SP_OK;
    }
    for (int64_t i = 0; i < n / t->block; i++, b += t->bytes, y += t->block) {
        int q[32];
        switch (type) {
        case SP_GT_Q4_0:
        case SP_GT_Q5_0: {
            const int five = type == SP_GT_Q5_0, z = five ? 16 : 8;
            const float d = h2f(b);
            get_codes_32(q, b + 2 + (five ? 4 : 0), five ? b + 2 : NULL);
            for (int j = 0; j < 32; j++) y[j] = (float)(q[j] - z) * d;
            break;
        }
        case SP_GT_Q4_1:
        case SP_GT_Q5_1: {
            const int five = type == SP_GT_Q5_1;
            const float d = h2f(b), m = h2f(b + 2);
            get_codes_32(q, b + 4 + (five ? 4 : 0), five ? b + 4 : NULL);
            for (int j = 0; j < 32; j++) {
                volatile float p = (float)q[j] * d; /* no fused multiply-add: ggml rounds twice */
                y[j] = p + m;
            }
            break;
        }
        case SP_GT_Q8_0: {
            const float d = h2f(b);
            for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
            break;
        }
        case SP_GT_Q2_0: {
            const float d = h2f(b);
            for (int j = 0; j < 64; j++) y[j] = (float)(((b[2 + j / 4] >> (2 * (j % 4))) & 3) - 1) * d;
            break;
        }
        case SP_GT_Q1_0: {
            const float d = h2f(b);
            for (int j = 0; j < 128; j++) y[j] = (b[2 + j / 8] >> (j % 8)) & 1 ? d : -d;
            break;
        }
        case SP_GT_Q4_K:
        case SP_GT_Q5_K: {
            const int five = type == SP_GT_Q5_K;
            const float d = h2f(b), dmin = h2f(b + 2);
            const uint8_t *qh = b + 16, *qs = b + 16 + (five ? 32 : 0);
            for (int j = 0; j < 8; j++) {
                int sc, m;
                k4_get_scale(b + 4, j, &sc, &m);
                const float d1 = d * (float)sc, m1 = dmin * (float)m;
                for (int l = 0; l < 32; l++) {
                    int c = (j & 1) ? qs[16 * (j - 1) + l] >> 4 : qs[16 * j + l] & 15;
                    if (five) c |= ((qh[l] >> j) & 1) << 4;
                    volatile float p = d1 * (float)c;
                    y[32 * j + l] = p - m1;
                }
            }
            break;
        }
        case SP_GT_Q2_K: {
            const float d = h2f(b + 80), dmin = h2f(b + 82);
            for (int j = 0; j < 16; j++) {
                const float d1 = d * (float)(b[j] & 15), m1 = dmin * (float)(b[j] >> 4);
                for (int l = 0; l < 16; l++) {
                    volatile float p = d1 * (float)get_2bit(b + 16, 16 * j + l);
                    y[16 * j + l] = p - m1;
                }
            }
            break;
        }
        case SP_GT_Q3_K: {
            const float d = h2f(b + 108);
            for (int j = 0; j < 16; j++) {
                const float d1 = d * (float)(k3_get_scale(b + 96, j) - 32);
                for (int l = 0; l < 16; l++) {
                    const int v = 16 * j + l, h = v / 128, jj = (v % 128) / 32, ll = v % 32;
                    const int c = get_2bit(b + 32, v) | (((b[ll] >> (4 * h + jj)) & 1) << 2);
                    y[v] = d1 * (float)(c - 4);
                }
            }
            break;
        }
        default: { /* Q6_K */
            const float d = h2f(b + 208);
            const int8_t *sc = (const int8_t *)(b + 192);
            for (int half = 0; half < 2; half++) {
                const uint8_t *L = b + 64 * half, *H = b + 128 + 32 * half;
                for (int l = 0; l < 32; l++) {
                    int c[4] = {(L[l] & 15) | ((H[l] & 3) << 4),
                                (L[l + 32] & 15) | (((H[l] >> 2) & 3) << 4),
                                (L[l] >> 4) | (((H[l] >> 4) & 3) << 4),
                                (L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4)};
                    for (int k = 0; k < 4; k++) {
                        int j = 8 * half + 2 * k + l / 16;
                        y[128 * half + l + 32 * k] = d * (float)sc[j] * (float)(c[k] - 32);
                    }
                }
            }
            break;
        }
        }
    }
    return SP_OK;
}

/* ---- exact levels ---------------------------------------------------------------------------- */

int sp_gtype_exact_of_level(int bits, int group_size, int sym, int cols) {
    if (!sym || group_size != 32 || cols % 32) return -1;
    return bits == 4 ? SP_GT_Q4_0 : bits == 5 ? SP_GT_Q5_0 : bits == 8 ? SP_GT_Q8_0 : -1;
}

sp_status sp_gtype_pack_qrow(int type, const sp_qlayer *q, int r, void *dst, sp_err *err) {
    SP_RETURN_IF(sp_gtype_exact_of_level(q->bits, q->group_size, q->sym, q->cols) != type, err,
                 SP_EINVAL, "gguf: a %d-bit level with group size %d%s is not %s", q->bits,
                 q->group_size, q->sym ? "" : " (asymmetric)", sp_gtype_name(type));
    const int z = 1 << (q->bits - 1);
    uint8_t *b = dst;
    const uint8_t *codes = q->codes + (size_t)r * (size_t)q->cols;
    for (int g = 0; g < q->n_groups; g++, b += sp_gtype_block_bytes(type)) {
        const float s = q->scales[(size_t)r * (size_t)q->n_groups + (size_t)g];
        SP_RETURN_IF(q->zeros[(size_t)r * (size_t)q->n_groups + (size_t)g] != z ||
                         sp_f16_to_f32(sp_f32_to_f16(s)) != s,
                     err, SP_EINVAL, "gguf: row %d group %d: zero point or scale %.9g does not fit %s",
                     r, g, (double)s, sp_gtype_name(type));
        sp_gtype_params p = {0};
        p.d = s;
        int qq[32];
        for (int j = 0; j < 32; j++) qq[j] = codes[32 * g + j];
        sp_gtype_put_block(type, &p, qq, b);
    }
    return SP_OK;
}

#define GTYPE_PARAMS(T)                                                                          \
    const float zf = (float)(1 << (bits - 1));                                                   \
    for (int r = 0; r < rows; r++) {                                                             \
        T v = 0, a = 0;                                                                          \
        for (int k = 0; k < n; k++) {                                                            \
            T x = X[(size_t)r * rs + (size_t)k * cs];                                            \
            if ((x < 0 ? -x : x) > a) a = x < 0 ? -x : x, v = x;                                 \
        }                                                                                        \
        float d = bits == 8 ? f16r((float)(a / 127)) : f16r((float)(v / -(T)zf));               \
        scale[(size_t)r * so] = d == 0.0f ? 1.0f : d;                                            \
        zero[(size_t)r * so] = (uint8_t)zf;                                                      \
    }

void sp_gtype_params_f32(float *scale, uint8_t *zero, size_t so, const float *X, size_t rs,
                         size_t cs, int rows, int n, int bits) {
    GTYPE_PARAMS(float)
}

void sp_gtype_params_f64(float *scale, uint8_t *zero, size_t so, const double *X, size_t rs,
                         size_t cs, int rows, int n, int bits) {
    GTYPE_PARAMS(double)
}

/* The shrink search: the rule's d for each row, then the grid d_p (see sp_gtype.h). The codes
 * are those sp_quant_column computes: clamp(rne(x / d) + z, 0, 2^b − 1). */
#define GTYPE_SEARCH(T)                                                                          \
    GTYPE_PARAMS(T)                                                                              \
    const int maxq = (1 << bits) - 1;                                                           \
    for (int r = 0; r < rows; r++) {                                                             \
        const float d0 = scale[(size_t)r * so];                                                  \
        float best_d = d0;                                                                       \
        double best = INFINITY;                                                                  \
        for (int i = 0; i < 80; i++) {                                                           \
            float d = i == 0 ? d0 : f16r(d0 * (float)(1.0 - i / 100.0));                        \
            if (d == 0.0f) break;                                                                \
            double e = 0;                                                                        \
            for (int k = 0; k < n && e < best; k++) {                                            \
                float x = (float)X[(size_t)r * rs + (size_t)k * cs];                             \
                float q = rintf(x / d) + zf;                                                     \
                q = q < 0.0f ? 0.0f : q > (float)maxq ? (float)maxq : q;                         \
                double dq = (double)x - (double)(d * (q - zf));                                  \
                e += wt[k] * dq * dq;                                                            \
            }                                                                                    \
            if (e < best) best = e, best_d = d;                                                  \
        }                                                                                        \
        scale[(size_t)r * so] = best_d;                                                          \
    }

void sp_gtype_params_search_f32(float *scale, uint8_t *zero, size_t so, const float *X,
                                size_t rs, size_t cs, int rows, int n, int bits,
                                const double *wt) {
    GTYPE_SEARCH(float)
}

void sp_gtype_params_search_f64(float *scale, uint8_t *zero, size_t so, const double *X,
                                size_t rs, size_t cs, int rows, int n, int bits,
                                const double *wt) {
    GTYPE_SEARCH(double)
}
