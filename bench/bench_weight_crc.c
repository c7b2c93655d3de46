/* bench_weight_crc.c — what the weight CRCs of issue 21 cost: the time to load a decoder block
 * (sp_model_load_block: read + convert to fp32 + NaN check) with and without the CRC-32 of every
 * tensor's values (sp_model_load_block_crc), in the same run, alternating, best of N each.
 * Resume re-reads the blocks already done with the CRC, so the "with" time is also the cost per
 * done block of a resume (spread over the ranks).
 *
 * usage: bench_weight_crc MODEL_DIR [LAYER] [REPS]
 * Output: human-readable lines, then "ROW | load | load+crc | ratio | crc GB/s |".
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "shards/sp_model.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_weight_crc MODEL_DIR [LAYER] [REPS]\n");
        return 2;
    }
    int layer = argc > 2 ? atoi(argv[2]) : 0, reps = argc > 3 ? atoi(argv[3]) : 3;
    sp_err err = {SP_OK, ""};
    sp_model *m = NULL;
    sp_block_weights w;
    if (sp_model_open(&m, argv[1], &err) != SP_OK ||
        sp_block_weights_alloc(&w, sp_model_config(m), &err) != SP_OK) {
        fprintf(stderr, "bench_weight_crc: %s\n", err.msg);
        return 1;
    }
    const sp_config *c = sp_model_config(m);
    double D = c->dim, F = c->hidden_dim, Q = (double)c->n_heads * c->head_dim,
           K = (double)c->n_kv_heads * c->head_dim;
    double values = 2 * D + Q * D + 2 * K * D + D * Q + 3 * D * F;
    double best[2] = {1e30, 1e30};
    uint32_t crc[SP_BLOCK_TENSORS];
    /* one untimed load first: the page cache then holds the file, as in a run's later reads */
    if (sp_model_load_block(m, layer, &w, &err) != SP_OK) {
        fprintf(stderr, "bench_weight_crc: %s\n", err.msg);
        return 1;
    }
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < 2; k++) {
            double t0 = now_s();
            sp_status st = k ? sp_model_load_block_crc(m, layer, &w, crc, &err)
                             : sp_model_load_block(m, layer, &w, &err);
            double t = now_s() - t0;
            if (st != SP_OK) {
                fprintf(stderr, "bench_weight_crc: %s\n", err.msg);
                return 1;
            }
            if (t < best[k]) best[k] = t;
        }
    double crc_s = best[1] - best[0];
    printf("block %d of %s: %.0f values (%.2f GB as fp32)\n", layer, argv[1], values, values * 4e-9);
    printf("load %.3f s, load + CRC %.3f s (best of %d): +%.1f%%, CRC at %.2f GB/s of fp32\n",
           best[0], best[1], reps, 100.0 * (best[1] / best[0] - 1.0),
           crc_s > 0 ? values * 4e-9 / crc_s : 0.0);
    printf("ROW | %.3f s | %.3f s | %.3f | %.2f |\n", best[0], best[1], best[1] / best[0],
           crc_s > 0 ? values * 4e-9 / crc_s : 0.0);
    sp_block_weights_free(&w);
    sp_model_close(m);
    return 0;
}
