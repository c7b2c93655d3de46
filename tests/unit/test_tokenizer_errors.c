/* test_tokenizer_errors.c — bad tokenizer files fail with one-line errors naming the file
 * and the token / field: truncated and corrupt llama2.c .bin files, tokenizer.json with an
 * unsupported model or step, broken merges, invalid JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shards/tok/sp_tokenizer.h"

#define MODEL SP_TEST_MODEL_DIR

static char dir[] = "/tmp/sp_tok_err_XXXXXX";
static char path[300];

static int setup(void **state) {
    (void)state;
    if (!mkdtemp(dir)) return -1;
    snprintf(path, sizeof path, "%s/bad_tokenizer", dir);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

static char *slurp(const char *p, size_t *len) {
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = '\0';
    *len = (size_t)n;
    return b;
}

static void put(const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* Load path; expect code, and a one-line message holding the path and each given fragment. */
static void expect_error(int vocab, sp_status code, const char *frag) {
    sp_tokenizer *t = (sp_tokenizer *)path; /* must come back NULL */
    sp_err err = {0};
    sp_status st = sp_tokenizer_load(&t, path, vocab, &err);
    if (st != code) fail_msg("want %s, got %s: %s", sp_strerror(code), sp_strerror(st), err.msg);
    assert_null(t);
    assert_non_null(strstr(err.msg, path));
    assert_null(strchr(err.msg, '\n'));
    if (frag && !strstr(err.msg, frag)) fail_msg("'%s' not in: %s", frag, err.msg);
}

/* byte offset of token i's record in a .bin image */
static size_t record(const char *bin, int i) {
    size_t pos = 4;
    for (int k = 0; k < i; k++) {
        int32_t l;
        memcpy(&l, bin + pos + 4, 4);
        pos += 8 + (size_t)l;
    }
    return pos;
}

static void truncated_bin(void **state) {
    (void)state;
    size_t len;
    char *bin = slurp(MODEL "/tok512.bin", &len);
    put(bin, 2);
    expect_error(512, SP_ETRUNC, "max_token_length");
    put(bin, record(bin, 0) + 8 + 2); /* inside the piece of token 0 */
    expect_error(512, SP_ETRUNC, "token 0");
    put(bin, record(bin, 300) + 5); /* inside the record header of token 300 */
    expect_error(0, SP_ETRUNC, "token 300");
    put(bin, record(bin, 400)); /* whole records, but 112 short of vocab_size */
    expect_error(512, SP_ETRUNC, "token 400");
    put(bin, len);
    expect_error(511, SP_EFORMAT, "bytes left"); /* more tokens than the model's vocab */
    put(bin, record(bin, 100)); /* 100 tokens cannot hold the 256 byte tokens */
    expect_error(0, SP_EFORMAT, "259");
    free(bin);
}

static void corrupt_bin(void **state) {
    (void)state;
    size_t len;
    char *bin = slurp(MODEL "/tok512.bin", &len);
    int32_t maxlen, v;
    memcpy(&maxlen, bin, 4);
    size_t at = record(bin, 10) + 4;
    int32_t orig;
    memcpy(&orig, bin + at, 4);
    v = maxlen + 1;
    memcpy(bin + at, &v, 4);
    put(bin, len);
    expect_error(512, SP_EFORMAT, "token 10: length");
    v = -1;
    memcpy(bin + at, &v, 4);
    put(bin, len);
    expect_error(0, SP_EFORMAT, "token 10: length -1");
    memcpy(bin + at, &orig, 4);
    v = 0;
    memcpy(bin, &v, 4);
    put(bin, len);
    expect_error(512, SP_EFORMAT, "max_token_length 0");
    free(bin);
}

/* tokenizer.json of the bundled model with one edit applied */
static void put_json_edit(void (*edit)(cJSON *root)) {
    size_t len;
    char *s = slurp(MODEL "/tokenizer.json", &len);
    cJSON *root = cJSON_Parse(s);
    assert_non_null(root);
    edit(root);
    char *out = cJSON_PrintUnformatted(root);
    put(out, strlen(out));
    free(out);
    cJSON_Delete(root);
    free(s);
}

static void to_unigram(cJSON *root) {
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(root, "model"), "type",
                              cJSON_CreateString("Unigram"));
}

static void bad_merge(cJSON *root) {
    cJSON *merges = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "model"), "merges");
    cJSON_ReplaceItemInArray(merges, 3, cJSON_CreateString("\xE2\x96\x81 zzz"));
}

static void three_part_merge(cJSON *root) {
    cJSON *merges = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "model"), "merges");
    cJSON_ReplaceItemInArray(merges, 0, cJSON_CreateString("a b c"));
}

static void whitespace_pretok(cJSON *root) {
    cJSON_ReplaceItemInObject(root, "pre_tokenizer",
                              cJSON_Parse("{\"type\": \"Whitespace\"}"));
}

static void bad_regex(cJSON *root) {
    cJSON_ReplaceItemInObject(root, "pre_tokenizer",
                              cJSON_Parse("{\"type\": \"Split\", \"behavior\": \"Isolated\", "
                                          "\"invert\": false, \"pattern\": {\"Regex\": \"(a\"}}"));
}

static void bad_id(cJSON *root) {
    cJSON *vocab = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "model"), "vocab");
    cJSON_ReplaceItemInObject(vocab, "<0x41>", cJSON_CreateNumber(-4));
}

static void bad_json(void **state) {
    (void)state;
    put_json_edit(to_unigram);
    expect_error(512, SP_EUNSUPPORTED, "'Unigram' is not supported");
    put_json_edit(bad_merge);
    expect_error(512, SP_EFORMAT, "merges[3]");
    put_json_edit(three_part_merge);
    expect_error(512, SP_EFORMAT, "merges[0]");
    put_json_edit(whitespace_pretok);
    expect_error(512, SP_EUNSUPPORTED, "Whitespace");
    put_json_edit(bad_regex);
    expect_error(512, SP_EFORMAT, "regex");
    put_json_edit(bad_id);
    expect_error(512, SP_EFORMAT, "<0x41>");
    const char broken[] = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}}";
    put(broken, sizeof broken - 1);
    expect_error(0, SP_EFORMAT, "invalid JSON");
    /* a valid file whose ids exceed the model's vocabulary */
    size_t len;
    char *s = slurp(MODEL "/tokenizer.json", &len);
    put(s, len);
    expect_error(100, SP_EFORMAT, "vocab_size 100");
    free(s);
    /* missing file */
    sp_tokenizer *t = NULL;
    sp_err err = {0};
    assert_int_equal(sp_tokenizer_load(&t, "/nonexistent/tokenizer.json", 0, &err), SP_ENOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/tokenizer.json"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(truncated_bin),
        cmocka_unit_test(corrupt_bin),
        cmocka_unit_test(bad_json),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
