/* sp_quant.h — group-wise uniform quantization of a weight matrix, and the quantized layer.
 *
 * A quantized layer W [rows=out, cols=in] stores, for every row r and group g:
 *   scale s[r,g] (fp32 holding an fp16-representable value) and integer zero z[r,g],
 * and for every weight an integer code q in [0, 2^bits - 1]:
 *   W[r,c] ≈ s[r,g] · (q[r,c] − z[r,g]),   g = g_idx[c] = c / group_size   (static groups)
 * Scales are rounded to fp16 when they are chosen, so a GPTQ export (fp16 scales) dequantizes
 * to exactly the same weights as the shardpress container.
 * Symmetric: z = 2^(bits-1) for every group. Asymmetric: z = round(−min/s), clamped to range.
 */
#ifndef SP_QUANT_H
#define SP_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "../common/sp_error.h"

typedef struct {
    int rows;         /* out features                                                     */
    int cols;         /* in features                                                      */
    int bits;         /* 2..8                                                             */
    int group_size;   /* columns per group (== cols for "one group per row", -1 on CLI)   */
    int n_groups;     /* ceil(cols / group_size); the last group of a row may be shorter  */
    int sym;          /* 1: symmetric                                                     */
    uint8_t *codes;   /* [rows, cols]  one code per byte                                  */
    float *scales;    /* [rows, n_groups]                                                 */
    uint8_t *zeros;   /* [rows, n_groups]                                                 */
    int32_t *g_idx;   /* [cols]        g_idx[c] = c / group_size                          */
    void *mem_;       /* one allocation                                                   */
} sp_qlayer;

/* Allocate a layer (codes/scales/zeros zeroed, g_idx filled). group_size <= 0 means cols.
 * @return SP_EINVAL for bits outside 2..8 or non-positive shape; SP_ENOMEM. */
sp_status sp_qlayer_alloc(sp_qlayer *q, int rows, int cols, int bits, int group_size, int sym,
                          sp_err *err);
void sp_qlayer_free(sp_qlayer *q);

/* W [rows, cols] <- dequantized weights. */
void sp_qlayer_dequant(float *W, const sp_qlayer *q);

#endif
