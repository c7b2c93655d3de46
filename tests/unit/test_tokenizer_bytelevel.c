/* test_tokenizer_bytelevel.c — byte-level BPE (GPT-2 / Llama 3 style) on a tokenizer.json
 * built here, so every expected id below can be worked out by hand.
 *
 * Vocabulary: ids 0..255 are the 256 byte tokens (id == byte value, written in the GPT-2
 * byte-to-unicode alphabet, which this test computes on its own), then the merges below,
 * "Ġxyz" (reachable only with ignore_merges), and added tokens.
 *
 * Two configurations:
 *   A  ByteLevel pre-tokenizer with its GPT-2 regex, merges as "a b" strings, no BOS, an
 *      lstrip added token <mask>;
 *   B  Sequence[Split(Llama 3 regex, Isolated), ByteLevel(use_regex false)], merges as
 *      ["a", "b"] pairs, ignore_merges, BOS from the post-processor template, EOS from a
 *      tokenizer_config.json.
 */
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

/* merge k (rank k) makes token 256 + k, except "a a" which makes 272 */
static const char *const MERGES[][2] = {
    {"Ġ", "t"},  {"h", "e"},  {"Ġt", "he"}, {"Ġ", "Ġ"},   {"o", "n"},  {"d", "on"},
    {"'", "t"},  {"1", "2"},  {"Ã", "¼"},   {"Ċ", "Ċ"},   {"Ġ", "w"},  {"o", "r"},
    {"Ġw", "or"}, {"l", "d"}, {"Ġwor", "ld"}, {"a", "a"},
};
enum { N_MERGES = sizeof MERGES / sizeof MERGES[0], XYZ = 271, AA = 272, EOT = 273, BOT = 274,
       MASK = 275 };

static const char LLAMA3_RE[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* GPT-2's bytes_to_unicode, written independently of the library. */
static void byte_char(int b, char out[4]) {
    int cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
        int k = 0;
        for (int x = 0; x < b; x++)
            k += !((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174);
        cp = 256 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

static cJSON *added(int id, const char *content, int special, int lstrip) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", id);
    cJSON_AddStringToObject(a, "content", content);
    cJSON_AddBoolToObject(a, "single_word", 0);
    cJSON_AddBoolToObject(a, "lstrip", lstrip);
    cJSON_AddBoolToObject(a, "rstrip", 0);
    cJSON_AddBoolToObject(a, "normalized", 0);
    cJSON_AddBoolToObject(a, "special", special);
    return a;
}

static void write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

/* Write <dir>/tokenizer.json for configuration A (b == 0) or B (b == 1). */
static void build(const char *dir, int b) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject();
    cJSON *vocab = cJSON_CreateObject(), *merges = cJSON_CreateArray();
    for (int i = 0; i < 256; i++) {
        char c[4];
        byte_char(i, c);
        cJSON_AddNumberToObject(vocab, c, i);
    }
    for (int k = 0; k < N_MERGES; k++) {
        char cat[32], sp[32];
        snprintf(cat, sizeof cat, "%s%s", MERGES[k][0], MERGES[k][1]);
        cJSON_AddNumberToObject(vocab, cat, k == N_MERGES - 1 ? AA : 256 + k);
        if (b) {
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, cJSON_CreateString(MERGES[k][0]));
            cJSON_AddItemToArray(pair, cJSON_CreateString(MERGES[k][1]));
            cJSON_AddItemToArray(merges, pair);
        } else {
            snprintf(sp, sizeof sp, "%s %s", MERGES[k][0], MERGES[k][1]);
            cJSON_AddItemToArray(merges, cJSON_CreateString(sp));
        }
    }
    cJSON_AddNumberToObject(vocab, "Ġxyz", XYZ);
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddBoolToObject(model, "ignore_merges", b);
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", merges);

    cJSON *add = cJSON_CreateArray();
    cJSON_AddItemToArray(add, added(EOT, "<|endoftext|>", 1, 0));
    if (b) cJSON_AddItemToArray(add, added(BOT, "<|begin_of_text|>", 1, 0));
    else cJSON_AddItemToArray(add, added(MASK, "<mask>", 0, 1));
    cJSON_AddItemToObject(root, "added_tokens", add);
    cJSON_AddNullToObject(root, "normalizer");

    cJSON *bl = cJSON_CreateObject();
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddBoolToObject(bl, "add_prefix_space", 0);
    cJSON_AddBoolToObject(bl, "trim_offsets", 1);
    cJSON_AddBoolToObject(bl, "use_regex", !b);
    if (b) {
        cJSON *seq = cJSON_CreateObject(), *list = cJSON_CreateArray();
        cJSON *split = cJSON_CreateObject(), *pat = cJSON_CreateObject();
        cJSON_AddStringToObject(pat, "Regex", LLAMA3_RE);
        cJSON_AddStringToObject(split, "type", "Split");
        cJSON_AddItemToObject(split, "pattern", pat);
        cJSON_AddStringToObject(split, "behavior", "Isolated");
        cJSON_AddBoolToObject(split, "invert", 0);
        cJSON_AddItemToArray(list, split);
        cJSON_AddItemToArray(list, bl);
        cJSON_AddStringToObject(seq, "type", "Sequence");
        cJSON_AddItemToObject(seq, "pretokenizers", list);
        cJSON_AddItemToObject(root, "pre_tokenizer", seq);
        cJSON *pp = cJSON_Parse(
            "{\"type\":\"Sequence\",\"processors\":[{\"type\":\"ByteLevel\"},"
            "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":"
            "\"<|begin_of_text|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
            "\"special_tokens\":{\"<|begin_of_text|>\":{\"id\":\"<|begin_of_text|>\","
            "\"ids\":[274],\"tokens\":[\"<|begin_of_text|>\"]}}}]}");
        cJSON_AddItemToObject(root, "post_processor", pp);
    } else {
        cJSON_AddItemToObject(root, "pre_tokenizer", bl);
        cJSON_AddItemToObject(root, "post_processor", cJSON_Parse("{\"type\":\"ByteLevel\"}"));
    }
    cJSON_AddItemToObject(root, "decoder", cJSON_Parse("{\"type\":\"ByteLevel\"}"));
    cJSON_AddItemToObject(root, "model", model);

    char path[256], *s = cJSON_Print(root);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    write_text(path, s);
    if (b) {
        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        write_text(path, "{\"eos_token\": {\"content\": \"<|endoftext|>\"}, \"bos_token\": null}");
    }
    free(s);
    cJSON_Delete(root);
}

typedef struct {
    const char *text;
    int a[12], na; /* ids under A */
    int b[12], nb; /* ids under B */
} case_t;

static const case_t CASES[] = {
    {"the world", {116, 257, 270}, 3, {116, 257, 270}, 3},
    {"don't", {261, 262}, 2, {261, 262}, 2},
    {"I'm", {73, 39, 109}, 3, {73, 39, 109}, 3},
    {"a   b", {97, 259, 32, 98}, 4, {97, 259, 32, 98}, 4},        /* "a" "  " " b" */
    {"x\n\ny", {120, 10, 10, 121}, 4, {120, 265, 121}, 3},        /* \s*[\r\n]+ in B */
    {"1212", {263, 263}, 2, {263, 49, 50}, 3},                    /* \p{N}{1,3} in B */
    {"\xC3\xBC" "ber", {264, 98, 101, 114}, 4, {264, 98, 101, 114}, 4}, /* über */
    {"\xE4\xB8\xAD", {228, 184, 173}, 3, {228, 184, 173}, 3},          /* 中: 0xAD is 'Ń' */
    {"\xF0\x9F\x98\x80", {240, 159, 152, 128}, 4, {240, 159, 152, 128}, 4},
    {"Hello, World!", {72, 101, 108, 108, 111, 44, 32, 87, 267, 269, 33}, 11,
     {72, 101, 108, 108, 111, 44, 32, 87, 267, 269, 33}, 11},
    {"hi<|endoftext|>the", {104, 105, EOT, 116, 257}, 5, {104, 105, EOT, 116, 257}, 5},
    {" xyz", {32, 120, 121, 122}, 4, {XYZ}, 1},                   /* ignore_merges in B */
    {"aaa", {AA, 97}, 2, {AA, 97}, 2},                            /* equal ranks: leftmost */
};

static sp_tokenizer *load_cfg(char *dir, int b) {
    assert_non_null(mkdtemp(dir));
    build(dir, b);
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    sp_tokenizer *t = NULL;
    sp_err err = {0};
    if (sp_tokenizer_load(&t, path, 0, &err) != SP_OK) fail_msg("%s", err.msg);
    return t;
}

static void cleanup(const char *dir) {
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    unlink(path);
    rmdir(dir);
}

static void check_cases(int b) {
    char dir[] = "/tmp/sp_tok_bl_XXXXXX";
    sp_tokenizer *t = load_cfg(dir, b);
    assert_int_equal(sp_tokenizer_vocab_size(t), b ? BOT + 1 : MASK + 1);
    assert_int_equal(sp_tokenizer_eos(t), EOT);
    assert_int_equal(sp_tokenizer_bos(t), b ? BOT : -1);
    assert_string_equal(sp_tokenizer_piece(t, 258), "Ġthe");
    for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
        const case_t *c = &CASES[k];
        const int *want = b ? c->b : c->a;
        int nw = b ? c->nb : c->na;
        int32_t *ids = NULL;
        size_t n, dl;
        sp_err err = {0};
        assert_int_equal(sp_tokenizer_encode(t, c->text, strlen(c->text), 0, &ids, &n, &err),
                         SP_OK);
        if ((int)n != nw) fail_msg("config %c case %zu: %zu ids, want %d", "AB"[b], k, n, nw);
        for (size_t i = 0; i < n; i++)
            if (ids[i] != want[i])
                fail_msg("config %c case %zu: id %zu is %d, want %d", "AB"[b], k, i, ids[i],
                         want[i]);
        char *back = NULL;
        assert_int_equal(sp_tokenizer_decode(t, ids, n, &back, &dl, &err), SP_OK);
        if (strstr(c->text, "<|endoftext|>"))
            assert_string_equal(back, "hithe"); /* special dropped */
        else
            assert_string_equal(back, c->text);
        assert_int_equal(dl, strlen(back));
        /* streaming: raw bytes per id add up to the same text */
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            char piece[64];
            size_t pl;
            assert_int_equal(sp_tokenizer_decode_step(t, i ? ids[i - 1] : -1, ids[i], piece,
                                                      sizeof piece, &pl, &err), SP_OK);
            assert_true(at + pl <= dl);
            assert_memory_equal(back + at, piece, pl);
            at += pl;
        }
        assert_int_equal(at, dl);
        free(back);
        free(ids);
    }
    /* add_bos adds the template's BOS in B, nothing in A (GPT-2 has none) */
    int32_t *ids = NULL;
    size_t n, dl;
    sp_err err = {0};
    assert_int_equal(sp_tokenizer_encode(t, "the", 3, 1, &ids, &n, &err), SP_OK);
    assert_int_equal(n, b ? 3 : 2);
    if (b) assert_int_equal(ids[0], BOT);
    free(ids);
    /* a lone lead byte decodes to U+FFFD, as from_utf8_lossy does */
    int32_t lone[] = {228};
    char *back = NULL;
    assert_int_equal(sp_tokenizer_decode(t, lone, 1, &back, &dl, &err), SP_OK);
    assert_string_equal(back, "\xEF\xBF\xBD");
    free(back);
    sp_tokenizer_free(t);
    cleanup(dir);
}

static void config_a_gpt2_regex(void **state) {
    (void)state;
    check_cases(0);
}

static void config_b_split_sequence(void **state) {
    (void)state;
    check_cases(1);
}

/* lstrip: the non-special <mask> swallows the space before it; decode keeps it (not special) */
static void added_token_lstrip(void **state) {
    (void)state;
    char dir[] = "/tmp/sp_tok_bl_XXXXXX";
    sp_tokenizer *t = load_cfg(dir, 0);
    int32_t *ids = NULL;
    size_t n, dl;
    sp_err err = {0};
    assert_int_equal(sp_tokenizer_encode(t, "a <mask>b", 9, 0, &ids, &n, &err), SP_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 97);
    assert_int_equal(ids[1], MASK);
    assert_int_equal(ids[2], 98);
    char *back = NULL;
    assert_int_equal(sp_tokenizer_decode(t, ids, n, &back, &dl, &err), SP_OK);
    assert_string_equal(back, "a<mask>b");
    free(back);
    free(ids);
    sp_tokenizer_free(t);
    cleanup(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_a_gpt2_regex),
        cmocka_unit_test(config_b_split_sequence),
        cmocka_unit_test(added_token_lstrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
