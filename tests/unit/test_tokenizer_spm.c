/* test_tokenizer_spm.c — SentencePiece-style BPE: the bundled stories260K tokenizer as
 * tokenizer.json (rank-ordered merges) and as llama2.c tok512.bin (score-greedy merges).
 *
 * - both give identical ids on WikiText-2 test, line by line and as one whole-file call
 *   (which must be fast: the merge engine is O(n log n));
 * - the engine matches a naive O(n^2) Hugging Face BPE written here from tokenizer.json;
 * - encode/decode round trips (expected_greedy text, byte fallback), special-token handling,
 *   sp_tokenizer_open_dir's search order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/test_data.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shards/tok/sp_tokenizer.h"

#define MODEL SP_TEST_MODEL_DIR
#define WIKI tu_data("text/wikitext-2-raw/wiki.test.raw")

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
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

static sp_tokenizer *load(const char *path) {
    sp_tokenizer *t = NULL;
    sp_err err = {0};
    sp_status st = sp_tokenizer_load(&t, path, 512, &err);
    if (st != SP_OK) fail_msg("%s", err.msg);
    return t;
}

static int32_t *enc(const sp_tokenizer *t, const char *s, size_t len, int bos, size_t *n) {
    int32_t *ids = NULL;
    sp_err err = {0};
    if (sp_tokenizer_encode(t, s, len, bos, &ids, n, &err) != SP_OK) fail_msg("%s", err.msg);
    return ids;
}

static char *dec(const sp_tokenizer *t, const int32_t *ids, size_t n, size_t *len) {
    char *out = NULL;
    sp_err err = {0};
    if (sp_tokenizer_decode(t, ids, n, &out, len, &err) != SP_OK) fail_msg("%s", err.msg);
    return out;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void json_and_bin_agree_line_by_line(void **state) {
    (void)state;
    sp_tokenizer *tj = load(MODEL "/tokenizer.json"), *tb = load(MODEL "/tok512.bin");
    size_t len, lines = 0, tokens = 0;
    char *text = slurp(WIKI, &len);
    for (char *p = text; p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        if (ll > 0) {
            size_t nj, nb;
            int32_t *a = enc(tj, p, ll, 0, &nj), *b = enc(tb, p, ll, 0, &nb);
            if (nj != nb || memcmp(a, b, nj * sizeof *a) != 0)
                fail_msg("line %zu differs: json %zu ids, bin %zu ids", lines, nj, nb);
            lines++;
            tokens += nj;
            free(a);
            free(b);
        }
        p += ll + 1;
    }
    assert_true(lines > 2500); /* 4358 lines, about 2/3 of them non-empty */
    assert_true(tokens > 700000);
    free(text);
    sp_tokenizer_free(tj);
    sp_tokenizer_free(tb);
}

static void json_and_bin_agree_whole_file_fast(void **state) {
    (void)state;
    sp_tokenizer *tj = load(MODEL "/tokenizer.json"), *tb = load(MODEL "/tok512.bin");
    size_t len, nj, nb, dl;
    char *text = slurp(WIKI, &len);
    double t0 = now();
    int32_t *a = enc(tj, text, len, 1, &nj);
    double tjson = now() - t0;
    t0 = now();
    int32_t *b = enc(tb, text, len, 1, &nb);
    double tbin = now() - t0;
    print_message("whole file (%zu bytes): json %zu ids in %.3f s, bin %zu ids in %.3f s\n", len,
                  nj, tjson, nb, tbin);
    assert_int_equal(a[0], 1);
    assert_int_equal(nj, nb);
    assert_memory_equal(a, b, nj * sizeof *a);
    /* an O(n^2) merge loop takes minutes here; the heap engine well under a second */
#if defined(__SANITIZE_ADDRESS__)
    const double limit = 20.0;
#else
    const double limit = 3.0;
#endif
    assert_true(tjson < limit);
    assert_true(tbin < limit);
    char *back = dec(tj, a, nj, &dl);
    assert_int_equal(dl, len);
    assert_memory_equal(back, text, len);
    free(back);
    free(a);
    free(b);
    free(text);
    sp_tokenizer_free(tj);
    sp_tokenizer_free(tb);
}

/* ---- a naive Hugging Face BPE, straight from tokenizer.json -------------------------- */

typedef struct {
    char key[260]; /* a piece, or "a b" for a merge */
    int value;     /* its id, or the merge's rank */
} entry;

typedef struct {
    entry *vocab, *ranks;
    size_t nv, nr;
} naive_bpe;

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const entry *)a)->key, ((const entry *)b)->key);
}

static const entry *find(const entry *arr, size_t n, const char *key) {
    entry k;
    snprintf(k.key, sizeof k.key, "%s", key);
    return bsearch(&k, arr, n, sizeof *arr, cmp_entry);
}

static naive_bpe naive_load(const char *path) {
    size_t len;
    char *s = slurp(path, &len);
    cJSON *root = cJSON_Parse(s);
    free(s);
    assert_non_null(root);
    cJSON *model = cJSON_GetObjectItem(root, "model");
    cJSON *vocab = cJSON_GetObjectItem(model, "vocab");
    cJSON *merges = cJSON_GetObjectItem(model, "merges");
    naive_bpe nb = {calloc((size_t)cJSON_GetArraySize(vocab), sizeof(entry)),
                    calloc((size_t)cJSON_GetArraySize(merges), sizeof(entry)), 0, 0};
    cJSON *m;
    cJSON_ArrayForEach(m, vocab) {
        snprintf(nb.vocab[nb.nv].key, sizeof nb.vocab[0].key, "%s", m->string);
        nb.vocab[nb.nv++].value = m->valueint;
    }
    cJSON_ArrayForEach(m, merges) {
        entry *e = &nb.ranks[nb.nr];
        if (cJSON_IsString(m))
            snprintf(e->key, sizeof e->key, "%s", m->valuestring);
        else
            snprintf(e->key, sizeof e->key, "%s %s", cJSON_GetArrayItem(m, 0)->valuestring,
                     cJSON_GetArrayItem(m, 1)->valuestring);
        e->value = (int)nb.nr++;
    }
    qsort(nb.vocab, nb.nv, sizeof(entry), cmp_entry);
    qsort(nb.ranks, nb.nr, sizeof(entry), cmp_entry);
    cJSON_Delete(root);
    return nb;
}

/* normalize (Prepend ▁, ' ' -> ▁), one symbol per character or <0xNN> bytes, then merge the
 * lowest-rank pair (leftmost on ties) until none is left. O(n^2), as simple as it gets. */
static size_t naive_encode(const naive_bpe *nb, const char *line, size_t ll, int32_t *out) {
    char norm[8192];
    size_t k = 0;
    memcpy(norm, "\xE2\x96\x81", 3);
    k = 3;
    for (size_t i = 0; i < ll; i++) {
        if (line[i] == ' ') {
            memcpy(norm + k, "\xE2\x96\x81", 3);
            k += 3;
        } else {
            norm[k++] = line[i];
        }
    }
    static char sym[8192][128];
    size_t n = 0;
    for (size_t i = 0; i < k;) {
        size_t cl = 1;
        while (i + cl < k && ((unsigned char)norm[i + cl] & 0xC0) == 0x80) cl++;
        memcpy(sym[n], norm + i, cl);
        sym[n][cl] = '\0';
        if (find(nb->vocab, nb->nv, sym[n])) {
            n++;
        } else {
            for (size_t b = 0; b < cl; b++)
                snprintf(sym[n++], sizeof sym[0], "<0x%02X>", (unsigned char)norm[i + b]);
        }
        i += cl;
    }
    for (;;) {
        double best = 1e30;
        size_t at = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            char key[260];
            snprintf(key, sizeof key, "%.127s %.127s", sym[i], sym[i + 1]);
            const entry *r = find(nb->ranks, nb->nr, key);
            if (r && r->value < best) {
                best = r->value;
                at = i;
            }
        }
        if (best == 1e30) break;
        char joined[260];
        snprintf(joined, sizeof joined, "%.127s%.127s", sym[at], sym[at + 1]);
        assert_true(strlen(joined) < sizeof sym[0]);
        memcpy(sym[at], joined, sizeof sym[0]);
        memmove(sym[at + 1], sym[at + 2], (n - at - 2) * sizeof sym[0]);
        n--;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = find(nb->vocab, nb->nv, sym[i])->value;
    return n;
}

static void engine_matches_naive_hf_bpe(void **state) {
    (void)state;
    naive_bpe nb = naive_load(MODEL "/tokenizer.json");
    sp_tokenizer *t = load(MODEL "/tokenizer.json");
    size_t len, checked = 0;
    char *text = slurp(WIKI, &len);
    static int32_t want[8192];
    for (char *p = text; p < text + len && checked < 300;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        if (ll > 0 && ll < 400) {
            size_t n, nw = naive_encode(&nb, p, ll, want);
            int32_t *got = enc(t, p, ll, 0, &n);
            assert_int_equal(n, nw);
            assert_memory_equal(got, want, n * sizeof *got);
            free(got);
            checked++;
        }
        p += ll + 1;
    }
    assert_int_equal(checked, 300);
    /* runs of one character: a pair overlapping itself, merged leftmost first */
    static const char *const ties[] = {"aaa", "aaaaa", "...", ".....", "     ", "  a   b    c",
                                       "eee", "=====", "1111111", "!!!!", "ooo ooo", "lll",
                                       "xppp", "kooo", "zllll", "(ooo)"};
    for (size_t k = 0; k < sizeof ties / sizeof ties[0]; k++) {
        size_t n, nw = naive_encode(&nb, ties[k], strlen(ties[k]), want);
        int32_t *got = enc(t, ties[k], strlen(ties[k]), 0, &n);
        assert_int_equal(n, nw);
        assert_memory_equal(got, want, n * sizeof *got);
        free(got);
    }
    free(text);
    free(nb.vocab);
    free(nb.ranks);
    sp_tokenizer_free(t);
}

static void expected_text_round_trips(void **state) {
    (void)state;
    const char *paths[] = {MODEL "/tokenizer.json", MODEL "/tok512.bin"};
    size_t len;
    char *text = slurp(MODEL "/expected_greedy_t0_n200.txt", &len);
    assert_true(len > 400);
    for (int k = 0; k < 2; k++) {
        sp_tokenizer *t = load(paths[k]);
        for (int bos = 0; bos < 2; bos++) {
            size_t n, dl;
            int32_t *ids = enc(t, text, len, bos, &n);
            /* the 200 generated tokens come back as exactly 200 ids */
            assert_int_equal(n, 200 + (size_t)bos);
            if (bos) assert_int_equal(ids[0], sp_tokenizer_bos(t));
            char *back = dec(t, ids, n, &dl);
            assert_int_equal(dl, len);
            assert_memory_equal(back, text, len);
            /* streaming, one id at a time, gives the same bytes */
            size_t at = 0;
            for (size_t i = 0; i < n; i++) {
                char piece[256];
                size_t pl;
                sp_err err = {0};
                assert_int_equal(sp_tokenizer_decode_step(t, i ? ids[i - 1] : -1, ids[i], piece,
                                                          sizeof piece, &pl, &err), SP_OK);
                assert_true(at + pl <= len);
                memcpy(back + at, piece, pl);
                at += pl;
            }
            assert_int_equal(at, len);
            assert_memory_equal(back, text, len);
            free(back);
            free(ids);
        }
        sp_tokenizer_free(t);
    }
    free(text);
}

static void specials_and_byte_fallback(void **state) {
    (void)state;
    sp_tokenizer *tj = load(MODEL "/tokenizer.json"), *tb = load(MODEL "/tok512.bin");
    for (int k = 0; k < 2; k++) {
        sp_tokenizer *t = k ? tb : tj;
        assert_int_equal(sp_tokenizer_vocab_size(t), 512);
        assert_int_equal(sp_tokenizer_bos(t), 1);
        assert_int_equal(sp_tokenizer_eos(t), 2);
        assert_string_equal(sp_tokenizer_piece(t, 13), "<0x0A>");
        assert_null(sp_tokenizer_piece(t, 512));
        assert_null(sp_tokenizer_piece(t, -1));
        /* ü and 中 are not in the 512 vocabulary: byte tokens, fused back on decode */
        const char *s = "Tom said \xC3\xBC and \xE4\xB8\xAD.\nThe end";
        size_t n, dl;
        int32_t *ids = enc(t, s, strlen(s), 1, &n);
        int bytes = 0;
        for (size_t i = 0; i < n; i++) bytes += ids[i] == 3 + 0xC3 || ids[i] == 3 + 0xE4;
        assert_int_equal(bytes, 2);
        int32_t *wrapped = malloc((n + 1) * sizeof *wrapped);
        memcpy(wrapped, ids, n * sizeof *ids);
        wrapped[n] = 2; /* EOS, dropped like BOS */
        char *back = dec(t, wrapped, n + 1, &dl);
        assert_string_equal(back, s);
        assert_int_equal(dl, strlen(s));
        free(back);
        /* a lone lead byte is not valid UTF-8: one U+FFFD, as Hugging Face's ByteFallback */
        int32_t lone[] = {3 + 0xE4};
        back = dec(t, lone, 1, &dl);
        assert_string_equal(back, "\xEF\xBF\xBD");
        free(back);
        int32_t bad[] = {5, 512};
        sp_err err = {0};
        char *o = NULL;
        assert_int_equal(sp_tokenizer_decode(t, bad, 2, &o, &dl, &err), SP_EINVAL);
        assert_non_null(strstr(err.msg, "512"));
        /* empty text: no ids (and no dummy prefix), or just BOS */
        free(ids);
        ids = enc(t, "", 0, 0, &n);
        assert_int_equal(n, 0);
        free(ids);
        ids = enc(t, "", 0, 1, &n);
        assert_int_equal(n, 1);
        assert_int_equal(ids[0], 1);
        free(ids);
        free(wrapped);
    }
    /* tokenizer.json matches special added tokens verbatim (and normalizes each side on its
     * own, as Hugging Face's legacy Llama tokenizer does); llama2.c has no such notion */
    const char *s = "Hi<s>there";
    size_t n;
    int32_t *ids = enc(tj, s, strlen(s), 0, &n);
    size_t at = n;
    for (size_t i = 0; i < n; i++)
        if (ids[i] == 1) at = i;
    assert_true(at > 0 && at + 1 < n);
    assert_memory_equal(sp_tokenizer_piece(tj, ids[at + 1]), "\xE2\x96\x81", 3);
    size_t dl;
    char *back = dec(tj, ids, n, &dl);
    assert_string_equal(back, "Hi there"); /* <s> dropped; "▁there" decodes with its space */
    free(back);
    free(ids);
    ids = enc(tb, s, strlen(s), 0, &n);
    for (size_t i = 0; i < n; i++) assert_int_not_equal(ids[i], 1);
    back = dec(tb, ids, n, &dl);
    assert_string_equal(back, s);
    free(back);
    free(ids);
    sp_tokenizer_free(tj);
    sp_tokenizer_free(tb);
}

static int is_json_tokenizer(const sp_tokenizer *t) {
    size_t n;
    int32_t *ids = enc(t, "a", 1, 0, &n);
    int r = memcmp(sp_tokenizer_piece(t, ids[0]), "\xE2\x96\x81", 3) == 0;
    assert_true(r || sp_tokenizer_piece(t, ids[0])[0] == ' ');
    free(ids);
    return r;
}

static void copy_file(const char *from, const char *to) {
    size_t len;
    char *b = slurp(from, &len);
    FILE *f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
    free(b);
}

static void open_dir_search_order(void **state) {
    (void)state;
    sp_tokenizer *t = NULL;
    sp_err err = {0};
    assert_int_equal(sp_tokenizer_open_dir(&t, MODEL, 512, &err), SP_OK);
    assert_true(is_json_tokenizer(t)); /* tokenizer.json before tok512.bin */
    sp_tokenizer_free(t);
    assert_int_equal(sp_tokenizer_open_dir(&t, MODEL "/stories260K.bin", 512, &err), SP_OK);
    assert_true(is_json_tokenizer(t)); /* a model file: the files beside it */
    sp_tokenizer_free(t);

    char dir[] = "/tmp/sp_tok_dir_XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/tok512.bin", dir);
    copy_file(MODEL "/tok512.bin", path);
    assert_int_equal(sp_tokenizer_open_dir(&t, dir, 512, &err), SP_OK);
    assert_false(is_json_tokenizer(t));
    sp_tokenizer_free(t);
    t = (sp_tokenizer *)&err; /* must be reset to NULL on failure */
    assert_int_equal(sp_tokenizer_open_dir(&t, dir, 0, &err), SP_ENOTFOUND);
    assert_null(t);
    assert_non_null(strstr(err.msg, dir));
    char bin[300];
    snprintf(bin, sizeof bin, "%s/tokenizer.bin", dir);
    copy_file(MODEL "/tok512.bin", bin);
    assert_int_equal(sp_tokenizer_open_dir(&t, dir, 0, &err), SP_OK); /* tokenizer.bin */
    assert_int_equal(sp_tokenizer_vocab_size(t), 512);
    sp_tokenizer_free(t);
    unlink(bin);
    unlink(path);
    rmdir(dir);
    assert_int_equal(sp_tokenizer_open_dir(&t, "/nonexistent/sp_tok", 512, &err), SP_ENOTFOUND);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_and_bin_agree_line_by_line),
        cmocka_unit_test(json_and_bin_agree_whole_file_fast),
        cmocka_unit_test(engine_matches_naive_hf_bpe),
        cmocka_unit_test(expected_text_round_trips),
        cmocka_unit_test(specials_and_byte_fallback),
        cmocka_unit_test(open_dir_search_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
