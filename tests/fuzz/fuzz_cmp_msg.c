/* fuzz_cmp_msg.c — an exchange message (mpi/sp_compress.h), as `shardpress exchange` receives
 * it from another site over MPI or in a files-transport file: sp_cmp_peek, then
 * sp_cmp_decode_add into a vector of the header's length.
 *
 * The message carries CRCs of its header and payload; a mutated input would almost never get
 * past them, so the target first writes the right CRCs into the input (as a sender would) and
 * then fuzzes what lies behind them: kinds, lengths, zstd frames, index lists, q8 blocks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "mpi/sp_compress.h"

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *m = malloc(size + 1);
    if (!m) return 0;
    memcpy(m, data, size);
    if (size >= SP_CMP_HEADER_BYTES) {
        uint64_t stored = get_u64(m + 32);
        size_t have = size - SP_CMP_HEADER_BYTES;
        size_t n = stored < have ? (size_t)stored : have;
        put_u32(m + 40, (uint32_t)crc32(crc32(0L, Z_NULL, 0), m + SP_CMP_HEADER_BYTES, (uInt)n));
        put_u32(m + 44, (uint32_t)crc32(crc32(0L, Z_NULL, 0), m, 44));
    }
    sp_cmp_header h;
    size_t len = 0;
    sp_err err = {SP_OK, ""};
    if (sp_cmp_peek(m, size, &h, &len, &err) == SP_OK) {
        if (len > size) abort(); /* peek promised the message lies inside the input */
        if (h.d <= ((uint64_t)1 << 20)) {
            float *y = calloc((size_t)h.d + 1, sizeof *y);
            if (y && sp_cmp_decode_add(m, size, 1.0f, y, (size_t)h.d, &err) != SP_OK)
                for (uint64_t j = 0; j < h.d; j++) /* "y is unchanged on error" */
                    if (y[j] != 0.0f) abort();
            free(y);
        }
    }
    free(m);
    return 0;
}
