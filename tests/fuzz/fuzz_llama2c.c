/* fuzz_llama2c.c — sp_model_open on a llama2.c checkpoint (.bin: 7 x int32 header, then the
 * weights), then what every job reads first: the config, an embedding row, the final norm,
 * a head row and decoder block 0 (converted to fp32, q/k rows permuted). */
#include "tests/fuzz/fuzz_util.h"

#include "shards/sp_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("model.bin", data, size);
    sp_model *m = NULL;
    sp_err err = {SP_OK, ""};
    if (sp_model_open(&m, path, &err) != SP_OK) return 0;
    const sp_config *c = sp_model_config(m);
    float *row = malloc(sizeof(float) * (size_t)c->dim);
    if (!row) abort();
    int32_t id = c->vocab_size - 1;
    (void)sp_model_embed(m, &id, 1, row, &err);
    (void)sp_model_read_final_norm(m, row, &err);
    (void)sp_model_read_head_rows(m, 0, 1, row, &err);
    free(row);
    sp_block_weights w;
    if (sp_block_weights_alloc(&w, c, &err) == SP_OK) {
        (void)sp_model_load_block(m, 0, &w, &err);
        sp_block_weights_free(&w);
    }
    sp_model_close(m);
    return 0;
}
