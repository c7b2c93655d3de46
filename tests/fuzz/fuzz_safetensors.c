/* fuzz_safetensors.c — sp_safetensors_open on one .safetensors file (header validation), then
 * every tensor's first elements converted to fp32 and the metadata looked up, as the model
 * backend does. */
#include "tests/fuzz/fuzz_util.h"

#include "shards/sp_safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("model.safetensors", data, size);
    sp_st_file *f = NULL;
    sp_err err = {SP_OK, ""};
    if (sp_safetensors_open(&f, path, &err) != SP_OK) return 0;
    float tmp[16];
    for (size_t i = 0; i < sp_safetensors_count(f); i++) {
        const sp_st_tensor *t = sp_safetensors_at(f, i);
        size_t es = sp_dtype_size(t->dtype), n = es ? t->nbytes / es : 0;
        sp_dtype_to_f32(tmp, t->data, t->dtype, n < 16 ? n : 16);
        if (sp_safetensors_find(f, t->name) != t) abort(); /* names are unique and sorted */
    }
    (void)sp_safetensors_metadata(f, "format");
    sp_safetensors_close(f);
    return 0;
}
