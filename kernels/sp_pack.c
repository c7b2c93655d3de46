/* sp_pack.c — see sp_pack.h.
 *
 * Shape legend: n codes, b = bits per code, W = ceil(n·b / 32) words.
 * Stream bit k = i·b + j (bit j of code i) lives in word k >> 5 at position k & 31.
 */
#include "kernels/sp_pack.h"

#include <string.h>

/* Word w of a possibly unaligned little-endian uint32 array (memcpy compiles to one load). */
static inline uint32_t load_word(const unsigned char *base, size_t w, size_t stride) {
    uint32_t v;
    memcpy(&v, base + 4 * w * stride, 4);
    return v;
}

size_t sp_pack_nwords(size_t n, int bits) {
    if (bits <= 0) return 0;
    return (n * (size_t)bits + 31) / 32;
}

sp_status sp_pack_bits(uint32_t *words, size_t word_stride, const uint8_t *codes,
                       size_t code_stride, size_t n, int bits, sp_err *err) {
    SP_RETURN_IF(bits < 1 || bits > 8, err, SP_EINVAL, "sp_pack_bits: bits=%d is outside 1..8",
                 bits);
    SP_RETURN_IF(word_stride == 0 || code_stride == 0, err, SP_EINVAL,
                 "sp_pack_bits: zero stride");
    const unsigned limit = 1u << bits;
    for (size_t i = 0; i < n; i++) {
        SP_RETURN_IF(codes[i * code_stride] >= limit, err, SP_EINVAL,
                     "sp_pack_bits: code %zu is %u, outside 0..%u for %d bits", i,
                     (unsigned)codes[i * code_stride], limit - 1, bits);
    }
    /* Accumulate codes LSB-first in a 64-bit register; flush 32 bits at a time. At most
     * 31 + 8 bits are pending, so the register never overflows. */
    uint64_t acc = 0;
    unsigned pending = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        acc |= (uint64_t)codes[i * code_stride] << pending;
        pending += (unsigned)bits;
        if (pending >= 32) {
            words[w * word_stride] = (uint32_t)acc;
            w++;
            acc >>= 32;
            pending -= 32;
        }
    }
    if (pending > 0) words[w * word_stride] = (uint32_t)acc; /* high bits stay zero */
    return SP_OK;
}

void sp_unpack_bits(uint8_t *codes, size_t code_stride, const void *words, size_t word_stride,
                    size_t n, int bits) {
    const unsigned char *base = words;
    const uint32_t mask = (1u << bits) - 1u;
    size_t bit = 0;
    for (size_t i = 0; i < n; i++, bit += (size_t)bits) {
        size_t w = bit >> 5;
        unsigned off = (unsigned)(bit & 31u);
        uint32_t v = load_word(base, w, word_stride) >> off;
        if (off + (unsigned)bits > 32) v |= load_word(base, w + 1, word_stride) << (32u - off);
        codes[i * code_stride] = (uint8_t)(v & mask);
    }
}

unsigned sp_pack_get(const void *words, size_t word_stride, size_t i, int bits) {
    size_t bit = i * (size_t)bits, w = bit >> 5;
    unsigned off = (unsigned)(bit & 31u);
    uint32_t v = load_word(words, w, word_stride) >> off;
    if (off + (unsigned)bits > 32) v |= load_word(words, w + 1, word_stride) << (32u - off);
    return v & ((1u << bits) - 1u);
}

int sp_pack_padding_dirty(const void *words, size_t word_stride, size_t n, int bits) {
    size_t used = n * (size_t)bits;
    size_t nw = sp_pack_nwords(n, bits);
    if (nw == 0 || (used & 31u) == 0) return 0;
    uint32_t last = load_word(words, nw - 1, word_stride);
    return (last >> (used & 31u)) != 0;
}
