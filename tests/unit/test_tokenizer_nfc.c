/* test_tokenizer_nfc.c — the NFC normalizer of tokenizer.json (Qwen2 / Qwen3 use it).
 *
 * Regression test: NFC used to be accepted and skipped ("input is taken as NFC"), so
 * decomposed or compatibility-equivalent text gave other ids than Hugging Face (Qwen3:
 * "Cafe\u0301" -> 5645 53839 instead of 2577, the Kelvin sign U+212A not becoming "K").
 *
 * Tokenizer built here: byte-level, ids 0..255 are the byte tokens (id == byte value), one
 * merge "Ã" + "©" (the bytes C3 A9 of "é") -> 256, ByteLevel without regex (the whole text is
 * one word). So the expected ids are the bytes of the NFC text, with C3 A9 -> 256.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shards/tok/sp_tokenizer.h"

enum { E_ACUTE = 256 };

/* GPT-2's bytes_to_unicode, written independently of the library, as a JSON string. */
static void byte_char(int b, char *out) {
    int cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
        int k = 0;
        for (int x = 0; x < b; x++)
            k += !((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174);
        cp = 256 + k;
    }
    if (cp == '"' || cp == '\\') sprintf(out, "\\%c", cp);
    else if (cp < 0x80) sprintf(out, "%c", cp);
    else sprintf(out, "\\u%04X", cp);
}

/* Write dir/tokenizer.json (with or without the NFC normalizer) and load it. */
static sp_tokenizer *load(char *dir, int nfc) {
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {", f);
    for (int b = 0; b < 256; b++) {
        char c[16];
        byte_char(b, c);
        fprintf(f, "\"%s\": %d, ", c, b);
    }
    fprintf(f, "\"\\u00C3\\u00A9\": %d}, \"merges\": [\"\\u00C3 \\u00A9\"]},\n", E_ACUTE);
    fprintf(f, " \"normalizer\": %s,\n", nfc ? "{\"type\": \"NFC\"}" : "null");
    fputs(" \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
          "\"use_regex\": false},\n \"decoder\": {\"type\": \"ByteLevel\"}}\n", f);
    fclose(f);
    sp_tokenizer *t = NULL;
    sp_err err = {0};
    if (sp_tokenizer_load(&t, path, 0, &err) != SP_OK) fail_msg("%s", err.msg);
    unlink(path);
    rmdir(dir);
    return t;
}

typedef struct {
    const char *text, *why;
    int want[12], n;
} case_t;

static const case_t CASES[] = {
    {"Cafe\xCC\x81", "e + U+0301 composes to U+00E9", {67, 97, 102, E_ACUTE}, 4},
    {"Caf\xC3\xA9", "already NFC: unchanged", {67, 97, 102, E_ACUTE}, 4},
    {"\xE2\x84\xAA", "Kelvin sign U+212A is a singleton: K", {75}, 1},
    {"\xE2\x84\xAB", "Angstrom sign U+212B: U+00C5", {0xC3, 0x85}, 2},
    {"\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "Hangul jamo L V T: U+AC01", {0xEA, 0xB0, 0x81}, 3},
    /* a + dot above (230) + dot below (220): reordered, a + dot below composes to U+1EA1 */
    {"a\xCC\x87\xCC\xA3", "canonical ordering", {0xE1, 0xBA, 0xA1, 0xCC, 0x87}, 5},
    {"\xCC\x81" "e", "a leading mark has no starter to join", {0xCC, 0x81, 101}, 3},
    {"\xEF\xAC\x81", "the ligature U+FB01 is NFC (compatibility only)", {0xEF, 0xAC, 0x81}, 3},
    /* U+0958 is a composition exclusion: it decomposes, and its parts never recompose */
    {"\xE0\xA5\x98", "exclusion U+0958 decomposes", {0xE0, 0xA4, 0x95, 0xE0, 0xA4, 0xBC}, 6},
    {"\xE0\xA4\x95\xE0\xA4\xBC", "U+0915 U+093C stays", {0xE0, 0xA4, 0x95, 0xE0, 0xA4, 0xBC}, 6},
};

static void check(sp_tokenizer *t, const char *text, const int *want, int nw, const char *why) {
    int32_t *ids = NULL;
    size_t n;
    sp_err err = {0};
    assert_int_equal(sp_tokenizer_encode(t, text, strlen(text), 0, &ids, &n, &err), SP_OK);
    if ((int)n != nw) fail_msg("%s: %zu ids, want %d", why, n, nw);
    for (int i = 0; i < nw; i++)
        if (ids[i] != want[i]) fail_msg("%s: id %d is %d, want %d", why, i, ids[i], want[i]);
    free(ids);
}

static void nfc_normalizer(void **state) {
    (void)state;
    char dir[] = "/tmp/sp_tok_nfc_XXXXXX";
    sp_tokenizer *t = load(dir, 1);
    for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++)
        check(t, CASES[k].text, CASES[k].want, CASES[k].n, CASES[k].why);
    sp_tokenizer_free(t);
}

/* Without the normalizer the text is not touched (so NFC above is the normalizer's doing). */
static void no_normalizer_keeps_text(void **state) {
    (void)state;
    char dir[] = "/tmp/sp_tok_nfc_XXXXXX";
    sp_tokenizer *t = load(dir, 0);
    static const int decomposed[] = {67, 97, 102, 101, 0xCC, 0x81};
    check(t, "Cafe\xCC\x81", decomposed, 6, "no normalizer");
    static const int kelvin[] = {0xE2, 0x84, 0xAA};
    check(t, "\xE2\x84\xAA", kelvin, 3, "no normalizer, Kelvin");
    sp_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nfc_normalizer),
        cmocka_unit_test(no_normalizer_keeps_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
