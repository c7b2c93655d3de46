/* sp_compress.h — contractive compressors for error-feedback exchange, and their wire format.
 *
 * A compressor C maps x ∈ R^d to a packed message; decoding gives C(x) ∈ R^d. EF21 needs C to
 * be contractive: ‖C(x) − x‖² ≤ (1 − α)‖x‖² for some α ∈ (0, 1] (sp_cmp_alpha gives the α each
 * one guarantees; Rand-K only in expectation).
 *
 * Spec strings (sp_cmp_parse):  BASE[+VALUES][+zstd]
 *   none | dense          every value as f32 (α = 1)
 *   topk:F | topk:N       the K = ceil(F·d) (0 < F <= 1) or K = min(N, d) largest |x_j|; ties
 *                         go to the lower index (α = K/d)
 *   randk:F | randk:N     K coordinates drawn uniformly without replacement from a seeded
 *                         stream (unscaled, so contractive in expectation: E = (1 − K/d)‖x‖²)
 *   q8                    every value, 8-bit absmax per block of 2048 (Dettmers et al. 2022):
 *                         step = absmax/127, code = round(x/step); α = 1 − 2048/(4·127²)
 *   +q8   (after topk/randk)  the K kept values 8-bit absmax per block of 2048 kept values
 *   +sign (after topk/randk)  ComPEFT: sign(x_j)·s with one scale s per message. ComPEFT's
 *                         s = α·std; here s = mean |x_S| over the kept set S, the value of α·std
 *                         that minimises ‖C(x) − x‖ (it makes ‖C(x)−x‖² = ‖x‖² − K·s², so C
 *                         stays contractive, α ≥ 1/d worst case)
 *   +zstd                 zstd (level 3) on the packed payload, kept only when it is smaller
 *   seed for randk: "randk:0.05@SEED" (default seed 0).
 *
 * Message (little-endian, self-describing: a receiver decodes it with no other knowledge):
 *   [0]  "SPC1"  [4] u8 kind  [5] u8 values  [6] u8 flags (bit 0: zstd)  [7] u8 0
 *   [8]  u64 d   [16] u64 k (coordinates carried)  [24] u64 raw payload bytes
 *   [32] u64 stored payload bytes  [40] u32 crc32(stored payload)  [44] u32 crc32(bytes 0..43)
 *   payload: sparse kinds: k indices, ascending, as LEB128 varints of the gaps (first index,
 *   then idx_j − idx_{j−1} − 1), then the values; dense kinds: the d values. Values: f32 ×k;
 *   q8: per block of ≤ 2048 values an f32 step then int8 codes; sign: an f32 scale then
 *   ceil(k/8) bytes, bit j set = negative.
 * The message length (header + stored payload) is every byte sent: callers count it.
 *
 * Thread-safety: all functions are reentrant (no globals); buffers belong to the caller.
 */
#ifndef SP_COMPRESS_H
#define SP_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"

typedef enum { SP_CMP_DENSE = 0, SP_CMP_TOPK = 1, SP_CMP_RANDK = 2, SP_CMP_Q8 = 3 } sp_cmp_kind;
typedef enum { SP_CMP_VAL_F32 = 0, SP_CMP_VAL_Q8 = 1, SP_CMP_VAL_SIGN = 2 } sp_cmp_values;

#define SP_CMP_HEADER_BYTES 48
#define SP_CMP_Q8_BLOCK 2048

typedef struct {
    sp_cmp_kind kind;
    sp_cmp_values values;
    double frac;    /* K = ceil(frac·d) when count == 0 (topk, randk)   */
    int64_t count;  /* K = min(count, d) when > 0                      */
    int zstd;       /* try zstd on the payload                         */
    uint64_t seed;  /* randk stream seed                               */
} sp_cmp_spec;

/* Parse a spec string (grammar above). @return SP_OK, or SP_EINVAL naming the bad part. */
sp_status sp_cmp_parse(const char *s, sp_cmp_spec *out, sp_err *err);
/* The canonical spec string (parse(format(s)) == s) into buf[cap]. */
void sp_cmp_format(const sp_cmp_spec *s, char *buf, size_t cap);
/* Coordinates a message of length d carries: K for topk/randk, d otherwise. */
size_t sp_cmp_k(const sp_cmp_spec *s, size_t d);
/* The contraction α this compressor guarantees on vectors of length d (randk: in expectation). */
double sp_cmp_alpha(const sp_cmp_spec *s, size_t d);

/* A growable byte buffer; zero-initialise it, free with sp_cmp_buf_free. */
typedef struct {
    uint8_t *data;
    size_t len, cap;
} sp_cmp_buf;
void sp_cmp_buf_free(sp_cmp_buf *b);
/* Make room for n more bytes. @return SP_OK or SP_ENOMEM. */
sp_status sp_cmp_buf_reserve(sp_cmp_buf *b, size_t n, sp_err *err);

/* Compress x[d] and APPEND the message to out (out->len grows by the message length).
 * stream: the randk stream id (callers derive it from round, tensor and site so that every
 * draw is reproducible); ignored by the other kinds.
 * @return SP_OK; SP_ENUMERIC when x holds NaN/Inf; SP_ENOMEM; SP_EINTERNAL (zstd failed). */
sp_status sp_cmp_encode(const sp_cmp_spec *s, const float *x, size_t d, uint64_t stream,
                        sp_cmp_buf *out, sp_err *err);

typedef struct {
    uint8_t kind, values, flags;
    uint64_t d, k, raw_len, stored_len;
    uint32_t crc;
} sp_cmp_header;

/* Validate the message at msg (avail bytes readable): magic, header CRC, known kind/values,
 * k <= d, lengths inside avail, payload CRC. *msg_len = header + stored payload.
 * @return SP_OK; SP_ETRUNC (shorter than it says); SP_EFORMAT (any impossible field). */
sp_status sp_cmp_peek(const uint8_t *msg, size_t avail, sp_cmp_header *h, size_t *msg_len,
                      sp_err *err);

/* Decode a message of length d (must equal the header's d): y[j] += scale·C(x)_j.
 * @return SP_OK; the errors of sp_cmp_peek; SP_EFORMAT for a payload that does not parse
 *         (indices out of order or range, wrong length); SP_ENOMEM. y is unchanged on error. */
sp_status sp_cmp_decode_add(const uint8_t *msg, size_t avail, float scale, float *y, size_t d,
                            sp_err *err);
/* The same into a double vector (the bench's iterates). */
sp_status sp_cmp_decode_add_f64(const uint8_t *msg, size_t avail, double scale, double *y,
                                size_t d, sp_err *err);

/* Top-K support, exposed for tests: write to idx[K] (ascending) the indices of the K largest
 * |x_j| of x[d], ties to the lower index. x must be finite. @return SP_OK or SP_ENOMEM. */
sp_status sp_cmp_topk_indices(const float *x, size_t d, size_t K, uint64_t *idx, sp_err *err);

/* splitmix64: the seeding hash used for randk streams (and by callers to derive stream ids). */
uint64_t sp_cmp_mix64(uint64_t x);

#endif
