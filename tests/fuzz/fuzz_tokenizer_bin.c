/* fuzz_tokenizer_bin.c — sp_tokenizer_load on a llama2.c tokenizer.bin (vocabulary 512, the
 * bundled model's), then the same fixed text as fuzz_tokenizer_json encoded and decoded. */
#include "tests/fuzz/fuzz_util.h"

#include "shards/tok/sp_tokenizer.h"

static const char TEXT[] =
    "Once upon a time, there was a little girl named Lily.\n\tShe said: \"e\xcc\x81t\xc3\xa9 "
    "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 <s></s> 1234567  \r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("tok512.bin", data, size);
    sp_tokenizer *t = NULL;
    sp_err err = {SP_OK, ""};
    if (sp_tokenizer_load(&t, path, 512, &err) != SP_OK) return 0;
    int32_t *ids = NULL;
    size_t n = 0;
    if (sp_tokenizer_encode(t, TEXT, sizeof TEXT - 1, 1, &ids, &n, &err) == SP_OK) {
        char *out = NULL;
        size_t len = 0;
        if (sp_tokenizer_decode(t, ids, n, &out, &len, &err) == SP_OK) free(out);
        char buf[256];
        for (size_t i = 0; i < n; i++) {
            size_t bl = 0;
            (void)sp_tokenizer_decode_step(t, i ? ids[i - 1] : -1, ids[i], buf, sizeof buf, &bl, &err);
        }
        free(ids);
    }
    sp_tokenizer_free(t);
    return 0;
}
