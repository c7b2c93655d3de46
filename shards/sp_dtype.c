/* sp_dtype.c — element sizes and the fp16 / bf16 <-> fp32 conversions (see sp_model.h).
 *
 * IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
 *   normal    (1 <= e <= 30): (-1)^s * 2^(e-15) * (1 + m/1024)
 *   subnormal (e == 0):       (-1)^s * 2^-24 * m
 *   e == 31: Inf (m == 0) or NaN.
 * bfloat16 is the top half of an fp32 (8-bit exponent), so widening is a shift.
 * All conversions work on bit patterns (memcpy, no type punning through unions).
 */
#include <stdint.h>
#include <string.h>

#include "shards/sp_model.h"

size_t sp_dtype_size(sp_dtype dt) {
    switch (dt) {
    case SP_DTYPE_F32: return 4;
    case SP_DTYPE_F16: return 2;
    case SP_DTYPE_BF16: return 2;
    case SP_DTYPE_I32: return 4;
    case SP_DTYPE_U8: return 1;
    case SP_DTYPE_I8: return 1;
    case SP_DTYPE_I64: return 8;
    }
    return 0;
}

const char *sp_dtype_name(sp_dtype dt) {
    switch (dt) {
    case SP_DTYPE_F32: return "F32";
    case SP_DTYPE_F16: return "F16";
    case SP_DTYPE_BF16: return "BF16";
    case SP_DTYPE_I32: return "I32";
    case SP_DTYPE_U8: return "U8";
    case SP_DTYPE_I8: return "I8";
    case SP_DTYPE_I64: return "I64";
    }
    return "?";
}

int sp_dtype_from_name(const char *name, sp_dtype *dt) {
    static const struct { const char *name; sp_dtype dt; } tab[] = {
        {"F32", SP_DTYPE_F32}, {"F16", SP_DTYPE_F16}, {"BF16", SP_DTYPE_BF16},
        {"I32", SP_DTYPE_I32}, {"U8", SP_DTYPE_U8},   {"I8", SP_DTYPE_I8},
        {"I64", SP_DTYPE_I64},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        if (strcmp(name, tab[i].name) == 0) {
            *dt = tab[i].dt;
            return 1;
        }
    }
    return 0;
}

static inline float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

float sp_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t em = h & 0x7fffu; /* exponent and mantissa */
    if (em >= 0x7c00u) {
        /* Inf / NaN: keep the payload in the top mantissa bits. */
        return bits_to_f32(sign | 0x7f800000u | ((em & 0x3ffu) << 13));
    }
    if (em >= 0x0400u) {
        /* normal: rebias the exponent from 15 to 127 (add 112 << 23). */
        return bits_to_f32(sign | ((em << 13) + 0x38000000u));
    }
    /* subnormal or zero: m * 2^-24 is exact in fp32. */
    float mag = (float)em * 0x1p-24f;
    return bits_to_f32(sign | f32_to_bits(mag));
}

uint16_t sp_f32_to_f16(float f) {
    uint32_t x = f32_to_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) /* NaN: quiet it, keep what fits of the payload */
        return (uint16_t)(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
    if (x >= 0x47800000u) /* >= 65536 (and Inf): overflow to Inf */
        return (uint16_t)(sign | 0x7c00u);
    if (x >= 0x38800000u) {
        /* normal range (>= 2^-14): rebias, then round the 13 dropped bits to nearest even.
         * A carry out of the mantissa bumps the exponent, which is the right result
         * (up to 65520 and above rounding to Inf). */
        uint32_t r = x - 0x38000000u;
        r = (r + 0x0fffu + ((r >> 13) & 1u)) >> 13;
        return (uint16_t)(sign | r);
    }
    if (x < 0x33000000u) /* below 2^-25: rounds to zero (2^-25 itself ties to even 0) */
        return sign;
    /* subnormal result: value = m * 2^(e-150) with the implicit bit in m; in units of
     * 2^-24 that is m >> (126 - e). Round the shifted-out bits to nearest even. */
    uint32_t e = x >> 23;
    uint32_t m = (x & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14..24 */
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

float sp_bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

uint16_t sp_f32_to_bf16(float f) {
    uint32_t x = f32_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign and top payload, force quiet */
        return (uint16_t)((x >> 16) | 0x0040u);
    /* round to nearest even on the 16 dropped bits; overflow rounds to Inf as it should */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

void sp_dtype_to_f32(float *dst, const void *src, sp_dtype dt, size_t n) {
    const unsigned char *p = src;
    /* src may be unaligned (safetensors data offsets need not be aligned): read via memcpy,
     * which compilers turn into plain loads. */
    switch (dt) {
    case SP_DTYPE_F32: memcpy(dst, p, n * sizeof(float)); break;
    case SP_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = sp_f16_to_f32(h);
        }
        break;
    case SP_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = sp_bf16_to_f32(h);
        }
        break;
    case SP_DTYPE_I32:
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            dst[i] = (float)v;
        }
        break;
    case SP_DTYPE_I64:
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            dst[i] = (float)v;
        }
        break;
    case SP_DTYPE_U8:
        for (size_t i = 0; i < n; i++) dst[i] = (float)p[i];
        break;
    case SP_DTYPE_I8:
        for (size_t i = 0; i < n; i++) dst[i] = (float)(int8_t)p[i];
        break;
    }
}
