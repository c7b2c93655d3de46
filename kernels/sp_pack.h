/* sp_pack.h — bit packing of small integer codes into little-endian uint32 words.
 *
 * Layout: the n codes form one continuous LSB-first bit stream. Code i (each `bits` wide,
 * 1 <= bits <= 8) occupies stream bits [i·bits, i·bits + bits); stream bit k lives in word
 * k / 32 at bit position k % 32. Codes may straddle two words. Unused high bits of the last
 * word are zero. This is exactly AutoGPTQ / GPTQ v1's packing for 2, 3, 4 and 8 bits (3-bit
 * codes straddle words there too) and its natural generalisation to 5, 6 and 7 bits.
 *
 *   n codes -> sp_pack_nwords(n, bits) = ceil(n·bits / 32) words
 *
 * Strides let one call pack along a row (stride 1) or down a column (stride = row length),
 * e.g. a GPTQ qweight [ceil(in·bits/32), out] holds column o's codes with word_stride = out.
 * Words are host uint32 values; on-disk little-endian order is the caller's concern (every
 * format shardpress writes is little-endian and so is every supported host).
 *
 * Thread-safety: pure functions of their arguments.
 */
#ifndef SP_PACK_H
#define SP_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"

/* Words needed for n codes of `bits` bits: ceil(n·bits / 32). */
size_t sp_pack_nwords(size_t n, int bits);

/* Pack codes[i·code_stride] (i < n) into words[w·word_stride] (w < sp_pack_nwords(n, bits)).
 * Every destination word is overwritten (padding bits become 0).
 * @return SP_OK; SP_EINVAL (words untouched) when bits is outside 1..8, a stride is 0, or a
 *         code is >= 2^bits (the message gives the index of the first such code). */
sp_status sp_pack_bits(uint32_t *words, size_t word_stride, const uint8_t *codes,
                       size_t code_stride, size_t n, int bits, sp_err *err);

/* Unpack n codes from the uint32 words at words + 4·w·word_stride bytes into
 * codes[i·code_stride]. words may be unaligned (e.g. a tensor inside a mapped safetensors file).
 * Padding bits of the last word are ignored. bits must be in 1..8 and strides non-zero (not
 * checked: callers validate shapes once, before the inner loops). */
void sp_unpack_bits(uint8_t *codes, size_t code_stride, const void *words, size_t word_stride,
                    size_t n, int bits);

/* Code i alone (same layout; words may be unaligned). */
unsigned sp_pack_get(const void *words, size_t word_stride, size_t i, int bits);

/* 1 when any bit of the words beyond the first n·bits stream bits is set (a corrupt or
 * foreign file: writers always leave padding zero). */
int sp_pack_padding_dirty(const void *words, size_t word_stride, size_t n, int bits);

#endif
