/* test_cli.c — the "module_name VALUE" map reader behind --bits-map and --type-map (issue 21
 * part 4): what it accepts is read back exactly as written, and every malformed line it used
 * to accept ("3.9", "3bits", "4 extra", a duplicate name) is one error naming the file and the
 * line. The expected values are the ones written into the file by the test, not the reader's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "kernels/sp_gtype.h"
#include "pipeline/sp_cli.h"
#include "pipeline/sp_gguf_cli.h"
#include "pipeline/sp_opts.h"
#include "tests/unit/shards_test_util.h"

typedef sp_status (*reader_fn)(const char *path, sp_bits_map *map, sp_err *err);

/* Write text to DIR/map.txt, read it with rd; on failure the message must start with
 * "<path>: line <line>:" (line > 0) and contain every extra word. */
static sp_status read_text(reader_fn rd, const char *text, sp_bits_map *m, int line,
                           const char *word) {
    char dir[256], p[4096], want[4200];
    tu_tmpdir(dir, sizeof dir);
    tu_write_str(tu_path(p, sizeof p, dir, "map.txt"), text);
    sp_err err = {0};
    sp_status st = rd(p, m, &err);
    if (line > 0) {
        assert_int_equal(st, SP_EFORMAT);
        snprintf(want, sizeof want, "%s: line %d:", p, line);
        if (strncmp(err.msg, want, strlen(want)) != 0) fail_msg("message '%s' does not start with '%s'", err.msg, want);
        assert_null(strchr(err.msg, '\n'));
        if (word && !strstr(err.msg, word)) fail_msg("message '%s' does not name '%s'", err.msg, word);
    }
    tu_rmdir(dir);
    return st;
}

static void test_bits_map_accepts(void **state) {
    (void)state;
    sp_bits_map m;
    assert_int_equal(read_text(sp_bits_map_read,
                               "# shardpress search MAP\n"
                               "model.layers.0.mlp.up_proj 3\n"
                               "\n"
                               "   \t# indented comment\n"
                               "\tmodel.layers.0.mlp.down_proj   8   # trailing note\n"
                               "model.layers.1.self_attn.q_proj 2\r\n"
                               "model.layers.1.self_attn.k_proj 1",   /* no final newline */
                               &m, 0, NULL), SP_OK);
    static const char *names[] = {"model.layers.0.mlp.up_proj", "model.layers.0.mlp.down_proj",
                                  "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj"};
    static const int bits[] = {3, 8, 2, 1};
    assert_int_equal(m.n, 4);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(m.names[i], names[i]);
        assert_int_equal(m.bits[i], bits[i]);
    }
    sp_bits_map_free(&m);
}

static void test_bits_map_refuses(void **state) {
    (void)state;
    sp_bits_map m;
    /* each: the text, the line at fault, a word the message must quote */
    static const struct { const char *text; int line; const char *word; } bad[] = {
        {"a 4\nmodel.layers.0.mlp.up_proj 3.9\n", 2, "3.9"},
        {"model.layers.0.mlp.up_proj 3bits\n", 1, "3bits"},
        {"# c\n\nmodel.layers.0.mlp.up_proj 4 extra\n", 3, "extra"},
        {"x 4\ny 3\nx 4\n", 3, "line 1"},           /* duplicate, even with the same value */
        {"x 4\ny 3\nx 2\n", 3, "'x'"},
        {"x\n", 1, "x"},
        {"x 9\n", 1, "9"},
        {"x 0\n", 1, "0"},                         /* 1 is the Q1_0 level (issue 20) */
        {"x -3\n", 1, "-3"},
        {"x 0x4\n", 1, "0x4"},
        {"x 4\ny\t\n", 2, "y"},
        {"x 99999999999999999999\n", 1, "99999999999999999999"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(read_text(sp_bits_map_read, bad[i].text, &m, bad[i].line, bad[i].word),
                         SP_EFORMAT);
        sp_bits_map_free(&m);
    }
    /* a line longer than the reader's buffer is an error, not two lines */
    char big[3000];
    memset(big, 'a', sizeof big);
    memcpy(big + sizeof big - 4, " 4\n", 4);
    assert_int_equal(read_text(sp_bits_map_read, big, &m, 1, NULL), SP_EFORMAT);
    sp_bits_map_free(&m);
    /* a missing file names the file */
    sp_err err = {0};
    assert_int_equal(sp_bits_map_read("/nonexistent/map.txt", &m, &err), SP_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/map.txt"));
    sp_bits_map_free(&m);
}

static void test_type_map(void **state) {
    (void)state;
    sp_bits_map m;
    assert_int_equal(read_text(sp_type_map_read, "a Q4_K\nb q6_k # lower case\nc F16\n", &m, 0,
                               NULL), SP_OK);
    assert_int_equal(m.n, 3);
    assert_int_equal(m.bits[0], SP_GT_Q4_K);
    assert_int_equal(m.bits[1], SP_GT_Q6_K);
    assert_int_equal(m.bits[2], SP_GT_F16);
    sp_bits_map_free(&m);
    static const struct { const char *text; int line; const char *word; } bad[] = {
        {"a Q4_K extra\n", 1, "extra"},
        {"a Q4_K\nb Q4_Kx\n", 2, "Q4_Kx"},
        {"a Q4_K\na Q6_K\n", 2, "line 1"},
        {"a 4\n", 1, "4"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(read_text(sp_type_map_read, bad[i].text, &m, bad[i].line, bad[i].word),
                         SP_EFORMAT);
        sp_bits_map_free(&m);
    }
}

/* sp_opts_parse: every kind of row stores what argv says (values written here, checked here);
 * bounds, unknown options, stray arguments and --help as the commands need them. */
static sp_status parse_list(const char *opt, const char *val, void *dst, sp_err *err) {
    int n = 0;
    return sp_cli_int_list(opt, val, 2, 8, dst, 4, &n, err);
}

static void test_opts_table(void **state) {
    (void)state;
    const char *model = NULL, *pos[2] = {NULL, NULL};
    int flag = 7, ctx = 0, levels[4] = {0}, help = -1, n_pos = -1;
    long big = 0;
    double lr = 0;
    const sp_opt t[] = {
        SP_OPT_S("model", &model),      SP_OPT_F("sym", &flag, 1),
        SP_OPT_F("asym", &flag, 0),     SP_OPT_I("ctx", &ctx, 2, 4096),
        SP_OPT_L("windows", &big, 1, 1L << 40), SP_OPT_D("lr", &lr, 0.0, 10.0),
        SP_OPT_X("levels", levels, parse_list),
    };
    const int n = (int)(sizeof t / sizeof t[0]);
    char *a1[] = {"cmd", "--model", "m dir", "--sym", "--asym", "--ctx", "512", "--windows=1099511627776",
                  "--lr", "0.25", "TEXT", "--levels", "2,3,8", NULL};
    sp_err err = {0};
    assert_int_equal(sp_opts_parse("cmd", t, n, 13, a1, &help, pos, 2, &n_pos, &err), SP_OK);
    assert_string_equal(model, "m dir");
    assert_int_equal(flag, 0); /* the later of --sym --asym */
    assert_int_equal(ctx, 512);
    assert_true(big == 1099511627776L);
    assert_true(lr == 0.25);
    assert_int_equal(levels[0], 2);
    assert_int_equal(levels[2], 8);
    assert_int_equal(help, 0);
    assert_int_equal(n_pos, 1);
    assert_string_equal(pos[0], "TEXT");
    /* errors name the option or the argument, in argv order */
    static const struct { const char *arg, *arg2, *want; } bad[] = {
        {"--ctx", "4097", "--ctx: 4097 is outside 2..4096"},
        {"--ctx", "5x", "--ctx: '5x' is not an integer"},
        {"--lr", "nan", "--lr: 'nan' is not a number"},
        {"--levels", "2,9", "--levels: 9 is outside 2..8"},
        {"--bogus", "1", "cmd: unknown or incomplete option '--bogus' (see shardpress cmd --help)"},
        {"--ctx", NULL, "cmd: unknown or incomplete option '--ctx' (see shardpress cmd --help)"},
        {"a", "b", "cmd: unexpected argument 'b'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *a[] = {"cmd", (char *)bad[i].arg, (char *)bad[i].arg2, NULL};
        int argc = bad[i].arg2 ? 3 : 2;
        assert_int_not_equal(sp_opts_parse("cmd", t, n, argc, a, &help, pos, 1, &n_pos, &err), SP_OK);
        assert_string_equal(err.msg, bad[i].want);
    }
    /* --help ends the parse, whatever follows */
    char *a3[] = {"cmd", "--help", "--bogus", NULL};
    assert_int_equal(sp_opts_parse("cmd", t, n, 3, a3, &help, NULL, 0, NULL, &err), SP_OK);
    assert_int_equal(help, 1);
}

/* quantize --levels: bit widths, each with an optional own group ("4g128", issue 19), or GGUF
 * type names. The expected arrays are written here from the strings, not by the parser. */
static void test_levels(void **state) {
    (void)state;
    int lv[7], ty[7], gr[7], n = 0, is_types = -1;
    sp_err err = {0};
    assert_int_equal(sp_gguf_cli_levels("2,3g128,4,8g-1", lv, 7, &n, ty, gr, &is_types, &err), SP_OK);
    const int want_lv[] = {2, 3, 4, 8}, want_gr[] = {0, 128, 0, -1};
    assert_int_equal(n, 4);
    assert_int_equal(is_types, 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(lv[i], want_lv[i]);
        assert_int_equal(gr[i], want_gr[i]);
        assert_int_equal(ty[i], 0);
    }
    assert_int_equal(sp_gguf_cli_levels("Q3_K,Q4_K", lv, 7, &n, ty, gr, &is_types, &err), SP_OK);
    assert_int_equal(n, 2);
    assert_int_equal(is_types, 1);
    assert_int_equal(lv[0], 3);
    assert_int_equal(lv[1], 4);
    assert_int_equal(ty[0], SP_GT_Q3_K);
    assert_int_equal(ty[1], SP_GT_Q4_K);
    assert_int_equal(gr[0], 0);
    assert_int_equal(gr[1], 0);
    static const struct { const char *val, *want; } bad[] = {
        {"4g0", "--levels: '4g0': the group size after 'g' must be >= 1, or -1 for one group per row"},
        {"4g", "--levels: '4g': the group size after 'g' must be >= 1, or -1 for one group per row"},
        {"4g-2", "--levels: '4g-2': the group size after 'g' must be >= 1, or -1 for one group per row"},
        {"4g12x", "--levels: '4g12x': the group size after 'g' must be >= 1, or -1 for one group per row"},
        {"g128", "--levels: 'g128' is not BITS or BITSgGROUP (e.g. 3 or 4g128)"},
        {"1g32", "--levels: 1 is outside 2..8"},
        {"x3", "--levels: 'x3' is not an integer"},
        {"2,3,4,5,6,7,8,2", "--levels: more than 7 levels"},
        {"", "--levels: missing value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sp_gguf_cli_levels(bad[i].val, lv, 7, &n, ty, gr, &is_types, &err), SP_EINVAL);
        assert_string_equal(err.msg, bad[i].want);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bits_map_accepts),
        cmocka_unit_test(test_bits_map_refuses),
        cmocka_unit_test(test_type_map),
        cmocka_unit_test(test_opts_table),
        cmocka_unit_test(test_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
