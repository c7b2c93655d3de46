/* fuzz_config.c — sp_config_load_json on config.json; a config it accepts must satisfy the
 * invariants sp_config.h promises (the rest of shardpress divides by them). */
#include "tests/fuzz/fuzz_util.h"

#include "shards/sp_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("config.json", data, size);
    sp_config c;
    sp_err err = {SP_OK, ""};
    if (sp_config_load_json(&c, path, &err) != SP_OK) return 0;
    if (c.dim <= 0 || c.hidden_dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 ||
        c.n_kv_heads <= 0 || c.head_dim <= 0 || c.vocab_size <= 0 || c.n_heads % c.n_kv_heads)
        abort();
    (void)sp_config_default_ctx(&c);
    return 0;
}
