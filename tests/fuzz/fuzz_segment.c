/* fuzz_segment.c — sp_segment_each on a block segment (block-00000.spb), the file quantize
 * writes per block and reads back to build the container and to resume. The segment ends in
 * a CRC32 of everything before it, which would stop almost every mutation at the first check;
 * the target writes the input's CRC into its last 4 bytes, so the fuzzer reaches the unit
 * parser behind it (a file with a wrong CRC is the one case that is never parsed further). */
#include "tests/fuzz/fuzz_util.h"

#include <zlib.h>

#include "pipeline/quantize/sp_segment.h"

static sp_status each_unit(void *ctx, int module, const sp_qlayer *q, sp_err *err) {
    (void)err;
    size_t *sum = ctx;
    *sum += (size_t)module + (size_t)q->rows * (size_t)q->cols;
    if (q->rows > 0 && q->cols > 0) *sum += q->codes[0] + q->codes[(size_t)q->rows * q->cols - 1];
    return SP_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    uint8_t *buf = malloc(size);
    if (!buf) abort();
    memcpy(buf, data, size);
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), buf, (uInt)(size - 4));
    memcpy(buf + size - 4, &crc, 4);
    (void)fuzz_file("block-00000.spb", buf, size);
    free(buf);
    size_t sum = 0;
    sp_err err = {SP_OK, ""};
    (void)sp_segment_each(fuzz_dir(), 0, crc, each_unit, &sum, &err);
    return 0;
}
