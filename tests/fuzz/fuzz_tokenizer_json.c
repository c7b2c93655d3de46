/* fuzz_tokenizer_json.c — sp_tokenizer_load on tokenizer.json, then a fixed text (ASCII,
 * accents to compose, CJK, an emoji, a special-token look-alike, digits, controls) encoded,
 * decoded, and streamed id by id. */
#include "tests/fuzz/fuzz_util.h"

#include "shards/tok/sp_tokenizer.h"

static const char TEXT[] =
    "Once upon a time, there was a little girl named Lily.\n\tShe said: \"e\xcc\x81t\xc3\xa9 "
    "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 <s></s><|endoftext|> 1234567 \xe2\x84\xaa \xea\xb0\x80"
    "  \r\n\xef\xbb\xbf";

static void tokenize_fixed(const sp_tokenizer *t) {
    int32_t *ids = NULL;
    size_t n = 0;
    sp_err err = {SP_OK, ""};
    if (sp_tokenizer_encode(t, TEXT, sizeof TEXT - 1, 1, &ids, &n, &err) != SP_OK) return;
    char *out = NULL;
    size_t len = 0;
    if (sp_tokenizer_decode(t, ids, n, &out, &len, &err) == SP_OK) free(out);
    char buf[256];
    int32_t prev = -1;
    for (size_t i = 0; i < n; i++) {
        size_t bl = 0;
        (void)sp_tokenizer_decode_step(t, prev, ids[i], buf, sizeof buf, &bl, &err);
        (void)sp_tokenizer_piece(t, ids[i]);
        prev = ids[i];
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("tokenizer.json", data, size);
    sp_tokenizer *t = NULL;
    sp_err err = {SP_OK, ""};
    if (sp_tokenizer_load(&t, path, 0, &err) != SP_OK) return 0;
    tokenize_fixed(t);
    sp_tokenizer_free(t);
    return 0;
}
