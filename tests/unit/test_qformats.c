/* test_qformats.c — bit packing and the quantized container (model.sp.h5): round trips,
 * byte-identical rewrites, validation of corrupt files, and the one-thread rule.
 * The GPTQ export and the two quantized sp_model backends: test_qformats_export.c.
 */
#include "tests/unit/qformats_test_util.h"
#include "kernels/sp_gtype.h"

/* ---- bit packing ------------------------------------------------------------------------ */

/* Reference: set stream bit i·b + j for bit j of code i, one bit at a time. */
static void ref_pack(uint32_t *w, const uint8_t *codes, size_t n, int b) {
    memset(w, 0, sp_pack_nwords(n, b) * 4);
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < b; j++)
            if (codes[i] >> j & 1u) w[(i * (size_t)b + (size_t)j) / 32] |= 1u << ((i * b + j) % 32);
}

static void test_pack_roundtrip(void **state) {
    (void)state;
    static const size_t lens[] = {1, 5, 31, 32, 33, 97, 172, 513};
    uint8_t codes[513], back[513 * 2];
    uint32_t words[600], ref[600], col[600 * 3];
    for (int b = 1; b <= 8; b++) {
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            size_t n = lens[li], nw = sp_pack_nwords(n, b);
            assert_int_equal(nw, (n * (size_t)b + 31) / 32);
            for (size_t i = 0; i < n; i++) codes[i] = (uint8_t)(rnd() & ((1u << b) - 1));
            memset(words, 0xff, sizeof words);
            sp_err e = {0};
            assert_int_equal(sp_pack_bits(words, 1, codes, 1, n, b, &e), SP_OK);
            ref_pack(ref, codes, n, b);
            assert_memory_equal(words, ref, nw * 4); /* padding bits are zero too */
            assert_int_equal(sp_pack_padding_dirty(words, 1, n, b), 0);
            memset(back, 0xee, sizeof back);
            sp_unpack_bits(back, 1, words, 1, n, b);
            assert_memory_equal(back, codes, n);
            for (size_t i = 0; i < n; i++) assert_int_equal(sp_pack_get(words, 1, i, b), codes[i]);
            /* strided: words down a column (stride 3), codes every other byte */
            uint8_t strided[1026];
            for (size_t i = 0; i < n; i++) strided[2 * i] = codes[i];
            memset(col, 0, sizeof col);
            assert_int_equal(sp_pack_bits(col + 1, 3, strided, 2, n, b, &e), SP_OK);
            for (size_t w = 0; w < nw; w++) {
                assert_int_equal(col[1 + 3 * w], ref[w]);
                assert_int_equal(col[3 * w], 0);
            }
            sp_unpack_bits(back, 2, col + 1, 3, n, b);
            for (size_t i = 0; i < n; i++) assert_int_equal(back[2 * i], codes[i]);
            if ((n * (size_t)b) % 32) { /* a set padding bit is detected */
                words[nw - 1] |= 0x80000000u;
                assert_int_equal(sp_pack_padding_dirty(words, 1, n, b), 1);
            }
        }
    }
    /* 3 bits, AutoGPTQ's layout: code 10 straddles words 0 (bits 30,31) and 1 (bit 0). */
    uint8_t c3[11] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5};
    sp_err e = {0};
    assert_int_equal(sp_pack_bits(words, 1, c3, 1, 11, 3, &e), SP_OK);
    assert_int_equal(words[0], 0x40000000u);
    assert_int_equal(words[1], 1u);
    /* out-of-range code: error, destination untouched */
    uint8_t bad[4] = {1, 2, 16, 3};
    words[0] = 0xdeadbeef;
    assert_int_equal(sp_pack_bits(words, 1, bad, 1, 4, 4, &e), SP_EINVAL);
    assert_non_null(strstr(e.msg, "code 2"));
    assert_int_equal(words[0], 0xdeadbeefu);
    assert_int_equal(sp_pack_bits(words, 1, bad, 1, 4, 9, &e), SP_EINVAL);
}

static void test_f16_exact(void **state) {
    (void)state;
    assert_true(sp_qcontainer_f16_exact(0.5f));
    assert_true(sp_qcontainer_f16_exact(-0.0f));
    assert_true(sp_qcontainer_f16_exact(65504.0f));
    assert_true(sp_qcontainer_f16_exact(1.0f + 0x1p-10f));
    assert_true(sp_qcontainer_f16_exact(0x1p-24f));
    assert_true(sp_qcontainer_f16_exact(3 * 0x1p-24f));
    assert_false(sp_qcontainer_f16_exact(0.1f));
    assert_false(sp_qcontainer_f16_exact(65520.0f));
    assert_false(sp_qcontainer_f16_exact(1.0f + 0x1p-11f));
    assert_false(sp_qcontainer_f16_exact(0x1p-25f));
    assert_false(sp_qcontainer_f16_exact(INFINITY));
    assert_false(sp_qcontainer_f16_exact(NAN));
}


static void test_container_roundtrip(void **state) {
    (void)state;
    char dir[256], path[300], partial[320];
    tmpdir(dir, sizeof dir);
    path_join(path, sizeof path, dir, SP_QCONTAINER_FILE);
    snprintf(partial, sizeof partial, "%s.partial", path);
    small_set s;
    small_set_make(&s);
    sp_err e = {0};
    sp_qcontainer *c = NULL;
    /* writer-side validation, before anything reaches the file */
    assert_int_equal(sp_qcontainer_create(&c, path, &small_meta, 0, &e), SP_OK);
    assert_int_equal(access(partial, F_OK), 0);
    assert_int_not_equal(access(path, F_OK), 0);
    sp_qlayer bad;
    random_qlayer(&bad, 3, 8, 5, 4, 0);
    expect_err(sp_qcontainer_put_qlayer(c, MOD_A, &bad, &e), &e, SP_EINVAL, "bits=5", NULL);
    sp_qlayer_free(&bad);
    random_qlayer(&bad, 3, 8, 3, 4, 0);
    bad.zeros[4] = 9;
    expect_err(sp_qcontainer_put_qlayer(c, MOD_A, &bad, &e), &e, SP_EINVAL, "zeros[2, 0]", NULL);
    bad.zeros[4] = 1;
    bad.scales[1] = 0.1f;
    expect_err(sp_qcontainer_put_qlayer(c, MOD_A, &bad, &e), &e, SP_EINVAL, "scales[0, 1]",
               "fp16");
    bad.scales[1] = 0.5f;
    bad.codes[5] = 8;
    expect_err(sp_qcontainer_put_qlayer(c, MOD_A, &bad, &e), &e, SP_EINVAL, "codes row 0", NULL);
    sp_qlayer_free(&bad);
    expect_err(sp_qcontainer_put_qlayer(c, "a/b", &s.a3, &e), &e, SP_EINVAL, "module name", NULL);
    ASSERT_OK(sp_qcontainer_put_qlayer(c, MOD_A, &s.a3, &e_));
    expect_err(sp_qcontainer_put_qlayer(c, MOD_A, &s.a3, &e), &e, SP_EINVAL, "stored twice",
               NULL);
    expect_err(sp_qcontainer_set_selected(c, MOD_A, 8, &e), &e, SP_ENOTFOUND, "8 bits", NULL);
    sp_qcontainer_discard(c); /* removes the partial file */
    assert_int_not_equal(access(partial, F_OK), 0);
    assert_int_not_equal(access(path, F_OK), 0);

    small_write(path, &s, 0);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_not_equal(access(partial, F_OK), 0);
    expect_err(sp_qcontainer_create(&c, path, &small_meta, 0, &e), &e, SP_EEXIST, path, NULL);
    assert_null(c);

    ASSERT_OK(sp_qcontainer_open(&c, path, &e_));
    const sp_qcontainer_meta *m = sp_qcontainer_get_meta(c);
    assert_int_equal(m->version, 2);
    assert_int_equal(m->default_bits, 4);
    assert_int_equal(m->group_size, 16);
    assert_int_equal(m->sym, 0);
    assert_string_equal(m->method, "rtn");
    assert_int_equal(m->n_levels, 4);
    assert_memory_equal(m->levels, small_meta.levels, 4 * sizeof(int));
    assert_int_equal(sp_qcontainer_n_modules(c), 2);
    assert_string_equal(sp_qcontainer_module_name(c, 0), MOD_B); /* strcmp order */
    assert_string_equal(sp_qcontainer_module_name(c, 1), MOD_A);
    assert_int_equal(sp_qcontainer_n_dense(c), 2);
    assert_string_equal(sp_qcontainer_dense_name(c, 0), "model.embed_tokens.weight");
    int levels[SP_QCONTAINER_MAX_LEVELS], n, sel;
    ASSERT_OK(sp_qcontainer_module_levels(c, MOD_A, levels, &n, &sel, &e_));
    assert_int_equal(n, 2);
    assert_int_equal(levels[0], 3);
    assert_int_equal(levels[1], 4);
    assert_int_equal(sel, 4); /* default_bits */
    ASSERT_OK(sp_qcontainer_module_levels(c, MOD_B, levels, &n, &sel, &e_));
    assert_int_equal(sel, 8); /* selected_bits */
    expect_err(sp_qcontainer_level_info(c, MOD_A, 8, &(sp_qlevel_info){0}, &e), &e, SP_ENOTFOUND,
               "stored: 3, 4", MOD_A);
    expect_err(sp_qcontainer_module_levels(c, "nope", levels, &n, NULL, &e), &e, SP_ENOTFOUND,
               "nope", NULL);

    const sp_qlayer *want[4] = {&s.a3, &s.a4, &s.b2, &s.b8};
    const char *mods[4] = {MOD_A, MOD_A, MOD_B, MOD_B};
    for (int k = 0; k < 4; k++) {
        sp_qlayer got;
        ASSERT_OK(sp_qcontainer_read_qlayer(c, mods[k], want[k]->bits, &got, &e_));
        assert_qlayer_equal(&got, want[k]);
        sp_qlayer_free(&got);
        /* dequantized rows 1..3 equal sp_qlayer_dequant's */
        size_t R = (size_t)want[k]->rows, C = (size_t)want[k]->cols;
        float *full = malloc(R * C * sizeof(float)), *part = malloc(3 * C * sizeof(float));
        sp_qlayer_dequant(full, want[k]);
        ASSERT_OK(sp_qcontainer_read_qrows(c, mods[k], want[k]->bits, 1, 3, part, &e_));
        assert_memory_equal(part, full + C, 3 * C * sizeof(float));
        expect_err(sp_qcontainer_read_qrows(c, mods[k], want[k]->bits, (int64_t)R - 1, 2, part,
                                            &e),
                   &e, SP_EINVAL, "out of range", NULL);
        free(full);
        free(part);
    }
    float buf[15];
    int ndim;
    int64_t shape[2];
    ASSERT_OK(sp_qcontainer_dense_desc(c, "model.embed_tokens.weight", &ndim, shape, &e_));
    assert_int_equal(ndim, 2);
    assert_int_equal(shape[0], 5);
    assert_int_equal(shape[1], 3);
    ASSERT_OK(sp_qcontainer_read_dense_rows(c, "model.embed_tokens.weight", 2, 3, buf, &e_));
    assert_memory_equal(buf, s.emb + 6, 9 * sizeof(float));
    ASSERT_OK(sp_qcontainer_read_dense_rows(c, "model.norm.weight", 0, 1, buf, &e_));
    assert_memory_equal(buf, s.norm, 10 * sizeof(float));
    ASSERT_OK(sp_qcontainer_close(c, &e_));
    small_set_free(&s);
    rm_tree(dir);
}

static void test_container_deterministic(void **state) {
    (void)state;
    char dir[256], p1[300], p2[300];
    tmpdir(dir, sizeof dir);
    path_join(p1, sizeof p1, dir, "one.sp.h5");
    path_join(p2, sizeof p2, dir, "two.sp.h5");
    small_set s;
    small_set_make(&s);
    small_write(p1, &s, 0);
    sleep(1); /* a timestamp, if any were stored, would now differ */
    small_write(p2, &s, 0);
    size_t n1, n2;
    unsigned char *b1 = slurp(p1, &n1), *b2 = slurp(p2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    /* force replaces an existing file */
    small_write(p2, &s, 1);
    free(b1);
    free(b2);
    small_set_free(&s);
    rm_tree(dir);
}

/* Open path with HDF5 for writing and apply one corruption. */
typedef enum { CORRUPT_VERSION, CORRUPT_BITS_ATTR, CORRUPT_COLS_ATTR, CORRUPT_DROP_ZEROS,
               CORRUPT_ZERO_VALUE, CORRUPT_GIDX_VALUE, CORRUPT_SCALE_VALUE, CORRUPT_DROP_ROWS,
               CORRUPT_SOFT_LINK } corruption;

static void write_int_attr(hid_t obj, const char *name, int v) {
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, H5T_NATIVE_INT, &v) >= 0);
    H5Aclose(a);
}

static void corrupt(const char *path, corruption how) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    char lv[300];
    snprintf(lv, sizeof lv, "/modules/%s/3bit", MOD_A);
    hid_t g = H5Gopen2(f, lv, H5P_DEFAULT);
    assert_true(g >= 0);
    if (how == CORRUPT_VERSION) write_int_attr(f, "version", 99);
    if (how == CORRUPT_BITS_ATTR) write_int_attr(g, "bits", 4);
    if (how == CORRUPT_COLS_ATTR) write_int_attr(g, "cols", 60);
    if (how == CORRUPT_DROP_ZEROS) assert_true(H5Ldelete(g, "zeros", H5P_DEFAULT) >= 0);
    if (how == CORRUPT_DROP_ROWS) assert_true(H5Adelete(g, "rows") >= 0);
    if (how == CORRUPT_SOFT_LINK)
        assert_true(H5Lcreate_soft("/dense/model.norm.weight", f, "/dense/alias", H5P_DEFAULT,
                                   H5P_DEFAULT) >= 0);
    if (how == CORRUPT_ZERO_VALUE || how == CORRUPT_GIDX_VALUE || how == CORRUPT_SCALE_VALUE) {
        const char *ds = how == CORRUPT_ZERO_VALUE ? "zeros"
                         : how == CORRUPT_GIDX_VALUE ? "g_idx" : "scales";
        hid_t d = H5Dopen2(g, ds, H5P_DEFAULT);
        assert_true(d >= 0);
        uint8_t zbuf[7 * 3];
        int32_t gbuf[45];
        float sbuf[7 * 3];
        hid_t t = how == CORRUPT_ZERO_VALUE ? H5T_NATIVE_UINT8
                  : how == CORRUPT_GIDX_VALUE ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT;
        void *buf = how == CORRUPT_ZERO_VALUE ? (void *)zbuf
                    : how == CORRUPT_GIDX_VALUE ? (void *)gbuf : (void *)sbuf;
        assert_true(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
        zbuf[4] = 8;     /* row 1 group 1: outside 0..7 for 3 bits */
        gbuf[44] = 3;    /* only groups 0..2 exist */
        sbuf[2] = 0.1f;  /* not an fp16 value */
        assert_true(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
        rewrite_crc(d, buf, how == CORRUPT_ZERO_VALUE ? sizeof zbuf
                            : how == CORRUPT_GIDX_VALUE ? sizeof gbuf : sizeof sbuf);
        H5Dclose(d);
    }
    H5Gclose(g);
    assert_true(H5Fclose(f) >= 0);
}

static void test_container_bad_input(void **state) {
    (void)state;
    char dir[256], good[300], path[300];
    tmpdir(dir, sizeof dir);
    path_join(good, sizeof good, dir, "good.sp.h5");
    path_join(path, sizeof path, dir, "bad.sp.h5");
    small_set s;
    small_set_make(&s);
    small_write(good, &s, 0);
    H5E_auto2_t f0;
    void *d0;
    H5Eget_auto2(H5E_DEFAULT, &f0, &d0);
    sp_err e = {0};
    sp_qcontainer *c = NULL;
    static const struct {
        corruption how;
        int at_open;
        sp_status code;
        const char *frag1, *frag2;
    } cases[] = {
        {CORRUPT_VERSION, 1, SP_EUNSUPPORTED, "attribute version is 99", NULL},
        {CORRUPT_BITS_ATTR, 1, SP_EFORMAT, "3bit: attribute bits=4", NULL},
        {CORRUPT_COLS_ATTR, 1, SP_EFORMAT, "3bit/qweight", "shape must be [7, 6]"},
        {CORRUPT_DROP_ZEROS, 1, SP_EFORMAT, "3bit/zeros", "missing"},
        {CORRUPT_DROP_ROWS, 1, SP_EFORMAT, "attribute rows is missing", NULL},
        {CORRUPT_SOFT_LINK, 1, SP_EFORMAT, "/dense: member alias is a soft", NULL},
        {CORRUPT_ZERO_VALUE, 0, SP_EFORMAT, "3bit/zeros: value 8 at row 1 group 1", NULL},
        {CORRUPT_GIDX_VALUE, 0, SP_EFORMAT, "3bit/g_idx: value 3 at column 44", NULL},
        {CORRUPT_SCALE_VALUE, 0, SP_EFORMAT, "3bit/scales", "row 0 group 2"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        copy_file(good, path);
        corrupt(path, cases[k].how);
        sp_status st = sp_qcontainer_open(&c, path, &e);
        if (!cases[k].at_open) {
            assert_int_equal(st, SP_OK);
            sp_qlayer q;
            float rows[45 * 7];
            st = sp_qcontainer_read_qlayer(c, MOD_A, 3, &q, &e);
            expect_err(st, &e, cases[k].code, cases[k].frag1, cases[k].frag2);
            assert_null(q.codes);
            st = sp_qcontainer_read_qrows(c, MOD_A, 3, 0, 7, rows, &e);
            sp_err e2 = {0};
            assert_int_equal(sp_qcontainer_close(c, &e2), SP_OK); /* no object left open */
            c = NULL;
        } else {
            assert_null(c);
        }
        expect_err(st, &e, cases[k].code, cases[k].frag1, cases[k].frag2);
        assert_non_null(strstr(e.msg, path));
        assert_null(strchr(e.msg, '\n'));
        /* every HDF5 object and file is closed on the error paths too */
        assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
    }
    /* not HDF5 at all; missing file */
    spit(path, "hello", 5);
    expect_err(sp_qcontainer_open(&c, path, &e), &e, SP_EFORMAT, "not an HDF5 file", path);
    unlink(path);
    expect_err(sp_qcontainer_open(&c, path, &e), &e, SP_EIO, path, NULL);
    /* HDF5's own error printing is left as it was */
    H5E_auto2_t f1;
    void *d1;
    H5Eget_auto2(H5E_DEFAULT, &f1, &d1);
    assert_true(f0 == f1 && d0 == d1);
    small_set_free(&s);
    rm_tree(dir);
}

typedef struct {
    sp_qcontainer *c;
    sp_status st;
    sp_err e;
} thread_arg;

static void *other_thread(void *p) {
    thread_arg *a = p;
    float rows[45];
    a->st = sp_qcontainer_read_qrows(a->c, MOD_A, 3, 0, 1, rows, &a->e);
    return NULL;
}

/* GGUF-type levels (issue 11): a Q4_K and a Q6_K level of one module and a Q4_1 level of
 * another round-trip with their offsets and super-block scales; the reader's dequantization is
 * the level's own; a value that is not the type's is refused by the writer and, written behind
 * the library's back (crc rewritten), by the reader, naming the dataset, the type and the row. */
static void test_container_gtype(void **state) {
    (void)state;
    char dir[256], path[300];
    tmpdir(dir, sizeof dir);
    path_join(path, sizeof path, dir, SP_QCONTAINER_FILE);
    const int R = 3, C = 512;
    float *W = malloc(sizeof(float) * R * C), *D = malloc(sizeof(float) * R * C);
    float *Y = malloc(sizeof(float) * R * C);
    for (int i = 0; i < R * C; i++) W[i] = (float)((int)(rnd() % 2001) - 1000) / 997.0f;
    sp_qlayer k4, k6, l1, back;
    sp_err e = {0};
    ASSERT_OK(sp_gtype_rtn_level(W, R, C, SP_GT_Q4_K, &k4, &e_));
    ASSERT_OK(sp_gtype_rtn_level(W, R, C, SP_GT_Q6_K, &k6, &e_));
    ASSERT_OK(sp_gtype_rtn_level(W, R, C, SP_GT_Q4_1, &l1, &e_));
    sp_qcontainer_meta meta = {.default_bits = 4, .group_size = 32, .sym = 1, .n_levels = 2,
                               .levels = {4, 6}};
    snprintf(meta.method, sizeof meta.method, "rtn");
    sp_qcontainer *c = NULL;
    ASSERT_OK(sp_qcontainer_create(&c, path, &meta, 0, &e_));
    float keep = k4.scales[5];
    k4.scales[5] = nextafterf(keep, 1e9f);
    expect_err(sp_qcontainer_put_qlayer(c, MOD_A, &k4, &e), &e, SP_EINVAL, "group 5", "Q4_K");
    k4.scales[5] = keep;
    ASSERT_OK(sp_qcontainer_put_qlayer(c, MOD_A, &k4, &e_));
    ASSERT_OK(sp_qcontainer_put_qlayer(c, MOD_A, &k6, &e_));
    ASSERT_OK(sp_qcontainer_put_qlayer(c, MOD_B, &l1, &e_));
    ASSERT_OK(sp_qcontainer_close(c, &e_));

    ASSERT_OK(sp_qcontainer_open(&c, path, &e_));
    const sp_qlayer *want[3] = {&k4, &k6, &l1};
    const char *mods[3] = {MOD_A, MOD_A, MOD_B};
    const int bits[3] = {4, 6, 4};
    for (int k = 0; k < 3; k++) {
        sp_qlevel_info li;
        ASSERT_OK(sp_qcontainer_level_info(c, mods[k], bits[k], &li, &e_));
        assert_int_equal(li.gtype, want[k]->gtype);
        ASSERT_OK(sp_qcontainer_read_qlayer(c, mods[k], bits[k], &back, &e_));
        assert_int_equal(back.gtype, want[k]->gtype);
        assert_qlayer_equal(&back, want[k]);
        const size_t ng = (size_t)R * (size_t)back.n_groups;
        if (want[k]->mins) assert_memory_equal(back.mins, want[k]->mins, ng * sizeof(float));
        else assert_null(back.mins);
        if (want[k]->supers)
            assert_memory_equal(back.supers, want[k]->supers, (size_t)R * (C / 256) * 2 * sizeof(float));
        sp_qlayer_dequant(D, want[k]);
        ASSERT_OK(sp_qcontainer_read_qrows(c, mods[k], bits[k], 1, 2, Y, &e_));
        assert_memory_equal(Y, D + C, sizeof(float) * 2 * C);
        sp_qlayer_free(&back);
    }
    sp_qcontainer_close(c, NULL);

    /* d of row 1's first super-block no longer an fp16 value: the reader refuses the level */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/modules/model.layers.0.self_attn.q_proj/4bit/supers", H5P_DEFAULT);
    assert_true(f >= 0 && d >= 0);
    float sup[3 * 4];
    assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, sup) >= 0);
    sup[4] = nextafterf(sup[4], 1e9f);
    assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, sup) >= 0);
    rewrite_crc(d, sup, sizeof sup);
    H5Dclose(d);
    H5Fclose(f);
    ASSERT_OK(sp_qcontainer_open(&c, path, &e_));
    expect_err(sp_qcontainer_read_qlayer(c, MOD_A, 4, &back, &e), &e, SP_EFORMAT, "Q4_K",
               "row 1");
    expect_err(sp_qcontainer_read_qrows(c, MOD_A, 4, 0, 3, Y, &e), &e, SP_EFORMAT, "supers",
               "fp16");
    ASSERT_OK(sp_qcontainer_read_qlayer(c, MOD_A, 6, &back, &e_)); /* the other level is fine */
    sp_qlayer_free(&back);
    sp_qcontainer_close(c, NULL);
    sp_qlayer_free(&k4);
    sp_qlayer_free(&k6);
    sp_qlayer_free(&l1);
    free(W);
    free(D);
    free(Y);
    rm_tree(dir);
}

static void test_container_thread_guard(void **state) {
    (void)state;
    char dir[256], path[300];
    tmpdir(dir, sizeof dir);
    path_join(path, sizeof path, dir, SP_QCONTAINER_FILE);
    small_set s;
    small_set_make(&s);
    small_write(path, &s, 0);
    sp_qcontainer *c = NULL;
    ASSERT_OK(sp_qcontainer_open(&c, path, &e_));
    thread_arg a = {.c = c};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread, &a), 0);
    pthread_join(t, NULL);
    expect_err(a.st, &a.e, SP_EINVAL, "thread", NULL);
    ASSERT_OK(sp_qcontainer_close(c, &e_));
    small_set_free(&s);
    rm_tree(dir);
}


int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_roundtrip),
        cmocka_unit_test(test_f16_exact),
        cmocka_unit_test(test_container_roundtrip),
        cmocka_unit_test(test_container_deterministic),
        cmocka_unit_test(test_container_bad_input),
        cmocka_unit_test(test_container_thread_guard),
        cmocka_unit_test(test_container_gtype),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
