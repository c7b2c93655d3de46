/* test_ckpt.c — the checkpoint engine (ckpt/sp_ckpt.h): keep/latest, round trips of every dtype
 * and 1..4-D shapes with uneven splits, lazy buffers (wait_buffer), corrupt/truncated/missing
 * checkpoints on resume, gzip and zstd, reading on fewer ranks, disk full, description errors.
 * Runs as 1 process (ctest "test_ckpt") and as 1, 2 and 4 ranks (tests/mpi/ckpt.cmake).
 */
#include "tests/unit/ckpt_test_util.h"

#define OK(expr)                                                      \
    do {                                                              \
        sp_err e_ = {SP_OK, ""};                                      \
        sp_status s_ = (expr);                                        \
        if (s_ != SP_OK) fprintf(stderr, "rank %d: %s\n", g_rank, e_.msg); \
        assert_int_equal(s_, SP_OK);                                  \
    } while (0)
/* OK(expr) needs the callee to write into e_: */
#define E (&e_)

typedef struct {
    const char *name;
    sp_ckpt_dtype dt;
    int ndim;
    int64_t shape[4];
    int mode; /* split_rows mode */
    void *buf;
    int64_t b, e, row_elems;
} item;

static void item_alloc(item *it, int k) {
    it->row_elems = 1;
    for (int d = 1; d < it->ndim; d++) it->row_elems *= it->shape[d];
    split_rows(it->mode, it->shape[0], g_rank, g_size, &it->b, &it->e);
    size_t n = (size_t)((it->e - it->b) * it->row_elems);
    it->buf = malloc(n * sp_ckpt_dtype_size(it->dt) + 1);
    pattern(it->dt, k, it->b * it->row_elems, (int64_t)n, it->buf);
}

static void put_items(sp_ckpt *ck, item *its, int n) {
    for (int k = 0; k < n; k++)
        OK(sp_ckpt_put_rows(ck, its[k].name, its[k].dt, its[k].ndim, its[k].shape, its[k].b,
                            its[k].e - its[k].b, its[k].buf, E));
}

/* Every rank reads dataset k completely and compares it with the pattern. */
static void check_item(sp_ckpt_reader *r, const item *it, int k) {
    sp_ckpt_dtype dt;
    int nd = 0;
    int64_t shape[4];
    OK(sp_ckpt_dataset_info(r, it->name, &dt, &nd, shape, E));
    assert_int_equal(dt, it->dt);
    assert_int_equal(nd, it->ndim);
    for (int d = 0; d < nd; d++) assert_int_equal(shape[d], it->shape[d]);
    size_t es = sp_ckpt_dtype_size(dt), n = (size_t)(it->shape[0] * it->row_elems);
    unsigned char *got = malloc(n * es + 1), *want = malloc(n * es + 1);
    pattern(dt, k, 0, (int64_t)n, want);
    memset(got, 0xab, n * es + 1);
    OK(sp_ckpt_read_rows(r, it->name, 0, it->shape[0], got, E));
    assert_memory_equal(got, want, n * es);
    if (it->shape[0] > 2) { /* a middle range */
        OK(sp_ckpt_read_rows(r, it->name, 1, it->shape[0] - 2, got, E));
        assert_memory_equal(got, want + (size_t)it->row_elems * es,
                            (size_t)((it->shape[0] - 2) * it->row_elems) * es);
    }
    free(got);
    free(want);
}

static sp_ckpt *make_engine(const char *dir, int keep, sp_ckpt_compress c) {
    sp_ckpt_opts o;
    sp_ckpt_opts_default(&o);
    o.keep = keep;
    o.compress = c;
    sp_ckpt *ck = NULL;
    OK(sp_ckpt_create(&ck, MPI_COMM_WORLD, dir, &o, E));
    return ck;
}

/* One small f32 dataset "w" [rows, 8], block split, pattern k = step. */
static void write_simple(sp_ckpt *ck, int64_t step, int64_t rows, float **keep_buf) {
    item it = {"w", SP_CKPT_F32, 2, {rows, 8}, 0, NULL, 0, 0, 0};
    item_alloc(&it, (int)step);
    OK(sp_ckpt_begin(ck, step, E));
    OK(sp_ckpt_put_attr_i64(ck, "layers_done", step * 10, E));
    put_items(ck, &it, 1);
    OK(sp_ckpt_commit(ck, E));
    *keep_buf = it.buf;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_keep_and_latest(void **state) {
    (void)state;
    char dir[600], latest[256];
    fresh_dir(dir, sizeof dir, "keep");
    sp_ckpt *ck = make_engine(dir, 2, SP_CKPT_NONE);
    float *bufs[3];
    for (int s = 1; s <= 3; s++) write_simple(ck, s, 40, &bufs[s - 1]);
    OK(sp_ckpt_wait_all(ck, E));
    sp_ckpt_stats st;
    sp_ckpt_get_stats(ck, &st);
    assert_int_equal(st.n_done, 3);
    assert_int_equal(st.n_failed, 0);
    int64_t b, e;
    split_rows(0, 40, g_rank, g_size, &b, &e);
    assert_int_equal(st.bytes, 3 * (e - b) * 8 * 4);
    assert_true(st.write_s > 0.0);
    if (g_rank == 0) {
        assert_false(file_exists(dir, "ckpt-00000001.h5"));
        assert_true(file_exists(dir, "ckpt-00000002.h5"));
        assert_true(file_exists(dir, "ckpt-00000003.h5"));
        assert_int_equal(count_entries(dir, "ckpt-"), 2); /* no .tmp left either */
        assert_int_equal(count_entries(dir, ".tmp"), 0);
        read_latest(dir, latest, sizeof latest);
        assert_string_equal(latest, "ckpt-00000003.h5");
    }
    /* Steps must increase: begin says so at once; the commit still queues the (failing)
     * checkpoint so that every rank's I/O thread stays in step, and the wait reports it. */
    sp_err e2 = {SP_OK, ""};
    assert_int_equal(sp_ckpt_begin(ck, 3, &e2), SP_EINVAL);
    assert_non_null(strstr(e2.msg, "step 3"));
    OK(sp_ckpt_commit(ck, E));
    e2.msg[0] = '\0';
    assert_int_equal(sp_ckpt_wait_all(ck, &e2), SP_EINVAL);
    assert_non_null(strstr(e2.msg, "step 3"));
    sp_ckpt_get_stats(ck, &st);
    assert_int_equal(st.n_failed, 1);
    if (g_rank == 0) assert_int_equal(count_entries(dir, "ckpt-"), 2); /* nothing touched */
    OK(sp_ckpt_destroy(ck, E));
    for (int s = 0; s < 3; s++) free(bufs[s]);
}

static void test_roundtrip(void **state) {
    (void)state;
    char dir[600];
    fresh_dir(dir, sizeof dir, "roundtrip");
    item its[] = {
        {"u8", SP_CKPT_U8, 1, {13}, 0, NULL, 0, 0, 0},
        {"grp/i32", SP_CKPT_I32, 2, {7, 5}, 1, NULL, 0, 0, 0},
        {"grp/sub/i64", SP_CKPT_I64, 3, {5, 3, 2}, 2, NULL, 0, 0, 0},
        {"f32", SP_CKPT_F32, 2, {11, 4}, 2, NULL, 0, 0, 0},
        {"grp/f64", SP_CKPT_F64, 4, {9, 1, 2, 3}, 1, NULL, 0, 0, 0},
        {"empty", SP_CKPT_F64, 2, {0, 3}, 0, NULL, 0, 0, 0},
    };
    int n = (int)(sizeof its / sizeof its[0]);
    for (int k = 0; k < n; k++) item_alloc(&its[k], k);
    sp_ckpt_opts o;
    sp_ckpt_opts_default(&o);
    assert_int_equal(o.verify, -1);
    o.verify = 1; /* read back before publishing, also uncompressed */
    sp_ckpt *ck = NULL;
    OK(sp_ckpt_create(&ck, MPI_COMM_WORLD, dir, &o, E));
    OK(sp_ckpt_begin(ck, 7, E));
    OK(sp_ckpt_put_attr_str(ck, "run", g_rank == 0 ? "{\"model\": \"x\"}" : "ignored", E));
    OK(sp_ckpt_put_attr_i64(ck, "layers_done", g_rank == 0 ? -42 : 99, E));
    put_items(ck, its, n);
    OK(sp_ckpt_commit(ck, E));
    OK(sp_ckpt_wait_all(ck, E));

    sp_ckpt_reader *r = NULL;
    char warn[1024];
    OK(sp_ckpt_open_latest(ck, &r, warn, sizeof warn, E));
    assert_string_equal(warn, "");
    assert_int_equal(sp_ckpt_reader_step(r), 7);
    assert_non_null(strstr(sp_ckpt_reader_path(r), "ckpt-00000007.h5"));
    char *s = NULL;
    int64_t v = 0;
    OK(sp_ckpt_get_attr_str(r, "run", &s, E));
    assert_string_equal(s, "{\"model\": \"x\"}"); /* rank 0's value on every rank */
    free(s);
    OK(sp_ckpt_get_attr_i64(r, "layers_done", &v, E));
    assert_int_equal(v, -42);
    OK(sp_ckpt_get_attr_i64(r, "step", &v, E));
    assert_int_equal(v, 7);
    OK(sp_ckpt_get_attr_str(r, "format", &s, E));
    assert_string_equal(s, "shardpress-ckpt");
    free(s);
    for (int k = 0; k < n; k++) check_item(r, &its[k], k);
    sp_err e = {SP_OK, ""};
    int nd;
    int64_t shape[4];
    float tmp[64];
    assert_int_equal(sp_ckpt_dataset_shape(r, "nope/x", &nd, shape, &e), SP_ENOTFOUND);
    assert_int_equal(sp_ckpt_get_attr_i64(r, "nope", &v, &e), SP_ENOTFOUND);
    assert_int_equal(sp_ckpt_read_rows(r, "f32", 10, 2, tmp, &e), SP_EINVAL);
    assert_non_null(strstr(e.msg, "f32"));
    assert_int_equal(sp_ckpt_get_attr_str(r, "layers_done", &s, &e), SP_EFORMAT);
    sp_ckpt_reader_close(r);
    OK(sp_ckpt_destroy(ck, E));
    for (int k = 0; k < n; k++) free(its[k].buf);
}

typedef struct {
    int calls;
    pthread_t tid;
} io_probe;

static sp_status note_thread(void *arg, sp_err *err) {
    (void)err;
    io_probe *p = arg;
    p->calls++;
    p->tid = pthread_self();
    return SP_OK;
}

static void test_wait_buffer(void **state) {
    (void)state;
    char dir[600];
    fresh_dir(dir, sizeof dir, "lazy");
    /* 4 Mi floats per rank: large enough that the write is still going when we return. */
    const int64_t rows = 1024 * g_size, cols = 4096;
    float *a = malloc((size_t)(rows / g_size * cols) * sizeof *a), other[4];
    int64_t shape[2] = {rows, cols}, r0 = g_rank * (rows / g_size);
    for (int64_t i = 0; i < rows / g_size * cols; i++) a[i] = (float)(r0 * cols + i);
    sp_ckpt *ck = make_engine(dir, 2, SP_CKPT_NONE);
    OK(sp_ckpt_begin(ck, 1, E));
    OK(sp_ckpt_put_rows(ck, "a", SP_CKPT_F32, 2, shape, r0, rows / g_size, a, E));
    OK(sp_ckpt_commit(ck, E));
    /* Local jobs run on the I/O thread even while the checkpoint is in flight. */
    io_probe p = {0, pthread_self()};
    OK(sp_ckpt_run_on_io(ck, note_thread, &p, E));
    assert_int_equal(p.calls, 1);
    assert_false(pthread_equal(p.tid, pthread_self()));
    sp_err e = {SP_OK, ""};
    assert_int_equal(sp_ckpt_run_on_io(ck, fail_fn, NULL, &e), SP_EFORMAT);
    assert_string_equal(e.msg, "probe: deliberate failure");
    /* A buffer that no checkpoint references returns at once; an interior pointer waits. */
    OK(sp_ckpt_wait_buffer(ck, other, E));
    OK(sp_ckpt_wait_buffer(ck, a + 100, E));
    for (int64_t i = 0; i < rows / g_size * cols; i++) a[i] = -1.0f; /* the caller reuses a */
    OK(sp_ckpt_wait_all(ck, E));
    sp_ckpt_stats st;
    sp_ckpt_get_stats(ck, &st);
    assert_true(st.blocked_s >= 0.0 && st.blocked_s < 60.0);
    assert_int_equal(st.n_done, 1);

    sp_ckpt_reader *r = NULL;
    OK(sp_ckpt_open_latest(ck, &r, NULL, 0, E));
    float *back = malloc((size_t)(rows / g_size * cols) * sizeof *back);
    OK(sp_ckpt_read_rows(r, "a", r0, rows / g_size, back, E));
    for (int64_t i = 0; i < rows / g_size * cols; i++)
        if (back[i] != (float)(r0 * cols + i)) fail_msg("element %lld changed", (long long)i);
    free(back);
    sp_ckpt_reader_close(r);
    /* Local jobs also run while the I/O thread waits for other ranks: here rank 0's waits in
     * phase 0 of checkpoint 2 until the last rank commits, a second later. */
    if (g_size > 1) {
        OK(sp_ckpt_begin(ck, 2, E));
        OK(sp_ckpt_put_rows(ck, "a", SP_CKPT_F32, 2, shape, r0, rows / g_size, a, E));
        if (g_rank == g_size - 1) sleep(1);
        OK(sp_ckpt_commit(ck, E));
        usleep(200000); /* let the I/O thread take the checkpoint and start waiting */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        OK(sp_ckpt_run_on_io(ck, note_thread, &p, E));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (g_rank == 0) assert_true(dt < 0.5);
        OK(sp_ckpt_wait_all(ck, E));
    }
    OK(sp_ckpt_destroy(ck, E));
    free(a);
}

/* Record dataset "w"'s file offset in ckpt-<step>.h5 (rank 0, on the I/O thread). */
static haddr_t dset_offset(sp_ckpt *ck, const char *dir, int step) {
    probe p;
    memset(&p, 0, sizeof p);
    snprintf(p.path, sizeof p.path, "%s/ckpt-%08d.h5", dir, step);
    snprintf(p.dset, sizeof p.dset, "w");
    OK(sp_ckpt_run_on_io(ck, probe_dset, &p, E));
    assert_true(p.offset != HADDR_UNDEF);
    assert_int_equal(p.filter, -1); /* contiguous, unfiltered */
    return p.offset;
}

static void flip_byte(const char *dir, int step, off_t off) {
    char p[1024];
    snprintf(p, sizeof p, "%s/ckpt-%08d.h5", dir, step);
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= 0x5a;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

static void test_corruption(void **state) {
    (void)state;
    char dir[600], warn[2048];
    fresh_dir(dir, sizeof dir, "corrupt");
    sp_ckpt *ck = make_engine(dir, 3, SP_CKPT_NONE);
    float *bufs[3];
    for (int s = 1; s <= 3; s++) write_simple(ck, s, 50, &bufs[s - 1]);
    OK(sp_ckpt_wait_all(ck, E));
    haddr_t off = 0;
    if (g_rank == 0) off = dset_offset(ck, dir, 3);
    OK(sp_ckpt_destroy(ck, E));
    if (g_rank == 0) flip_byte(dir, 3, (off_t)off + 37); /* inside w's raw data */
    MPI_Barrier(MPI_COMM_WORLD);

    ck = make_engine(dir, 3, SP_CKPT_NONE);
    sp_ckpt_reader *r = NULL;
    OK(sp_ckpt_open_latest(ck, &r, warn, sizeof warn, E));
    assert_int_equal(sp_ckpt_reader_step(r), 2);
    assert_non_null(strstr(warn, "ckpt-00000003.h5: dataset 'w': checksum mismatch"));
    int64_t v;
    OK(sp_ckpt_get_attr_i64(r, "layers_done", &v, E));
    assert_int_equal(v, 20);
    sp_ckpt_reader_close(r);

    /* Truncate the newest good one: step 1 is next. */
    if (g_rank == 0) {
        char p[1024];
        struct stat sb;
        snprintf(p, sizeof p, "%s/ckpt-00000002.h5", dir);
        assert_int_equal(stat(p, &sb), 0);
        assert_int_equal(truncate(p, sb.st_size / 2), 0);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    OK(sp_ckpt_open_latest(ck, &r, warn, sizeof warn, E));
    assert_int_equal(sp_ckpt_reader_step(r), 1);
    assert_non_null(strstr(warn, "ckpt-00000003.h5: dataset 'w': checksum mismatch"));
    assert_non_null(strstr(warn, "ckpt-00000002.h5: truncated"));
    item it = {"w", SP_CKPT_F32, 2, {50, 8}, 0, NULL, 0, 0, 8};
    check_item(r, &it, 1);
    sp_ckpt_reader_close(r);
    OK(sp_ckpt_destroy(ck, E));
    for (int s = 0; s < 3; s++) free(bufs[s]);
}

static void test_missing_partial_incomplete(void **state) {
    (void)state;
    char dir[600], warn[2048], p[1024];
    fresh_dir(dir, sizeof dir, "missing");
    sp_ckpt *ck = make_engine(dir, 2, SP_CKPT_NONE);
    float *bufs[2];
    for (int s = 1; s <= 2; s++) write_simple(ck, s, 30, &bufs[s - 1]);
    OK(sp_ckpt_wait_all(ck, E));
    if (g_rank == 0) {
        /* latest names ckpt 2, which disappears; a leftover tmp of step 5; an incomplete 4. */
        snprintf(p, sizeof p, "%s/ckpt-00000002.h5", dir);
        assert_int_equal(unlink(p), 0);
        snprintf(p, sizeof p, "%s/.ckpt-00000005.h5.tmp", dir);
        FILE *f = fopen(p, "w");
        fputs("partial", f);
        fclose(f);
        probe pr;
        memset(&pr, 0, sizeof pr);
        snprintf(pr.path, sizeof pr.path, "%s/ckpt-00000004.h5", dir);
        pr.step = 4;
        OK(sp_ckpt_run_on_io(ck, make_incomplete, &pr, E));
    }
    MPI_Barrier(MPI_COMM_WORLD);
    sp_ckpt_reader *r = NULL;
    OK(sp_ckpt_open_latest(ck, &r, warn, sizeof warn, E));
    assert_int_equal(sp_ckpt_reader_step(r), 1);
    assert_non_null(strstr(warn, ".ckpt-00000005.h5.tmp: partial checkpoint"));
    assert_non_null(strstr(warn, "ckpt-00000004.h5: incomplete"));
    assert_non_null(strstr(warn, "ckpt-00000002.h5: named by 'latest' but missing"));
    /* Newest first: 5, 4, 2. */
    assert_true(strstr(warn, ".ckpt-00000005") < strstr(warn, "ckpt-00000004.h5: inc"));
    assert_true(strstr(warn, "ckpt-00000004.h5: inc") < strstr(warn, "ckpt-00000002.h5"));
    sp_ckpt_reader_close(r);
    /* The run goes on from step 1: step 3's publish removes the stale 4 and the tmp 5. */
    float *b3;
    write_simple(ck, 3, 30, &b3);
    OK(sp_ckpt_wait_all(ck, E));
    if (g_rank == 0) {
        assert_false(file_exists(dir, "ckpt-00000004.h5"));
        assert_false(file_exists(dir, ".ckpt-00000005.h5.tmp"));
        assert_true(file_exists(dir, "ckpt-00000003.h5"));
        assert_true(file_exists(dir, "ckpt-00000001.h5"));
        unlink(strcat(strcpy(p, dir), "/ckpt-00000001.h5"));
        unlink(strcat(strcpy(p, dir), "/ckpt-00000003.h5"));
    }
    MPI_Barrier(MPI_COMM_WORLD);
    sp_err e = {SP_OK, ""};
    assert_int_equal(sp_ckpt_open_latest(ck, &r, warn, sizeof warn, &e), SP_ENOTFOUND);
    assert_null(r);
    assert_non_null(strstr(warn, "ckpt-00000003.h5: named by 'latest' but missing"));
    OK(sp_ckpt_destroy(ck, E));
    free(bufs[0]);
    free(bufs[1]);
    free(b3);
}

static void compress_roundtrip(sp_ckpt_compress c, int filter_id) {
    char dir[600];
    fresh_dir(dir, sizeof dir, c == SP_CKPT_GZIP ? "gzip" : "zstd");
    /* 3000 rows of 2 KiB: two ~4 MiB chunks; uneven splits cross chunk boundaries. */
    item its[] = {
        {"w", SP_CKPT_F32, 2, {3000, 512}, 2, NULL, 0, 0, 0},
        {"ids", SP_CKPT_I64, 1, {77}, 1, NULL, 0, 0, 0},
        {"g/u8", SP_CKPT_U8, 3, {5, 4, 3}, 0, NULL, 0, 0, 0},
    };
    for (int k = 0; k < 3; k++) item_alloc(&its[k], k);
    sp_ckpt *ck = make_engine(dir, 2, c);
    OK(sp_ckpt_begin(ck, 1, E));
    put_items(ck, its, 3);
    OK(sp_ckpt_commit(ck, E));
    OK(sp_ckpt_wait_all(ck, E));
    if (g_rank == 0) {
        probe p;
        memset(&p, 0, sizeof p);
        snprintf(p.path, sizeof p.path, "%s/ckpt-00000001.h5", dir);
        snprintf(p.dset, sizeof p.dset, "w");
        OK(sp_ckpt_run_on_io(ck, probe_dset, &p, E));
        assert_int_equal(p.filter, filter_id);
        struct stat sb;
        assert_int_equal(stat(p.path, &sb), 0);
        /* The pattern compresses (gzip -1: to 25%, zstd -3: to 70%, as with the CLI tools). */
        assert_true(sb.st_size < 3000 * 512 * 4 * 3 / 4);
    }
    sp_ckpt_reader *r = NULL;
    char warn[512];
    OK(sp_ckpt_open_latest(ck, &r, warn, sizeof warn, E));
    assert_string_equal(warn, "");
    for (int k = 0; k < 3; k++) check_item(r, &its[k], k);
    sp_ckpt_reader_close(r);
    OK(sp_ckpt_destroy(ck, E));
    for (int k = 0; k < 3; k++) free(its[k].buf);
}

static void test_gzip(void **state) {
    (void)state;
    compress_roundtrip(SP_CKPT_GZIP, H5Z_FILTER_DEFLATE);
}

static void test_zstd(void **state) {
    (void)state;
    compress_roundtrip(SP_CKPT_ZSTD, SP_CKPT_ZSTD_FILTER_ID);
}

static void test_fewer_ranks(void **state) {
    (void)state;
    char dir[600];
    fresh_dir(dir, sizeof dir, "fewer");
    item it = {"x", SP_CKPT_F32, 2, {1001, 33}, 1, NULL, 0, 0, 0};
    item_alloc(&it, 5);
    sp_ckpt *ck = make_engine(dir, 2, SP_CKPT_ZSTD);
    OK(sp_ckpt_begin(ck, 12, E));
    put_items(ck, &it, 1);
    OK(sp_ckpt_commit(ck, E));
    OK(sp_ckpt_destroy(ck, E)); /* destroy waits: at most one engine per process */
    MPI_Comm sub;
    MPI_Comm_split(MPI_COMM_WORLD, g_rank == 0 ? 0 : MPI_UNDEFINED, 0, &sub);
    if (g_rank == 0) {
        ck = NULL;
        OK(sp_ckpt_create(&ck, sub, dir, NULL, E));
        sp_ckpt_reader *r = NULL;
        OK(sp_ckpt_open_latest(ck, &r, NULL, 0, E));
        assert_int_equal(sp_ckpt_reader_step(r), 12);
        check_item(r, &it, 5);
        sp_ckpt_reader_close(r);
        OK(sp_ckpt_destroy(ck, E));
        MPI_Comm_free(&sub);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    free(it.buf);
}

/* A checkpoint whose slabs leave rows uncovered fails on the I/O thread; every rank gets the
 * error from wait_buffer of its buffer, and wait_all does not report it again. */
static void test_async_error_reporting(void **state) {
    (void)state;
    char dir[600];
    fresh_dir(dir, sizeof dir, "asyncerr");
    sp_ckpt *ck = make_engine(dir, 2, SP_CKPT_NONE);
    float good[64], bad[8] = {0};
    float *b1;
    write_simple(ck, 1, 16, &b1);
    int64_t shape[1] = {8L * g_size + 1}; /* the last row is written by no rank */
    OK(sp_ckpt_begin(ck, 2, E));
    OK(sp_ckpt_put_rows(ck, "v", SP_CKPT_F32, 1, shape, 8L * g_rank, 8, bad, E));
    OK(sp_ckpt_commit(ck, E));
    sp_err e = {SP_OK, ""};
    assert_int_equal(sp_ckpt_wait_buffer(ck, bad, &e), SP_EINVAL);
    assert_non_null(strstr(e.msg, "ckpt-00000002.h5: dataset 'v': rows"));
    assert_non_null(strstr(e.msg, "written by no rank"));
    assert_non_null(strstr(e.msg, "checkpoint discarded"));
    OK(sp_ckpt_wait_all(ck, E));
    /* A description error on one rank only: put_rows reports it there at once; commit queues
     * the checkpoint anyway and it fails on every rank, reported by wait_buffer(good). */
    for (int i = 0; i < 64; i++) good[i] = (float)i;
    int64_t s2[1] = {64L * g_size};
    OK(sp_ckpt_begin(ck, 3, E));
    sp_status st = sp_ckpt_put_rows(ck, "g", SP_CKPT_F32, 1, s2,
                                    g_rank == g_size - 1 ? 64L * g_size : 64L * g_rank, 64, good,
                                    &e);
    assert_int_equal(st, g_rank == g_size - 1 ? SP_EINVAL : SP_OK);
    OK(sp_ckpt_commit(ck, E));
    e.msg[0] = '\0';
    /* On the bad rank the item was refused, so it holds no reference to good: wait_all. */
    assert_int_equal(g_rank == g_size - 1 ? sp_ckpt_wait_all(ck, &e)
                                          : sp_ckpt_wait_buffer(ck, good, &e), SP_EINVAL);
    assert_non_null(strstr(e.msg, "outside"));
    OK(sp_ckpt_wait_all(ck, E));
    /* Ranks describing different checkpoints. */
    if (g_size > 1) {
        OK(sp_ckpt_begin(ck, 4, E));
        OK(sp_ckpt_put_rows(ck, g_rank == 0 ? "a" : "b", SP_CKPT_F32, 1, s2, 64L * g_rank, 64,
                            good, E));
        OK(sp_ckpt_commit(ck, E));
        assert_int_equal(sp_ckpt_wait_all(ck, &e), SP_EINVAL);
        assert_non_null(strstr(e.msg, "different"));
    }
    /* Commit without begin fails at once, and (queued as a failing placeholder) on every rank
     * at the next wait. */
    assert_int_equal(sp_ckpt_commit(ck, &e), SP_EINVAL);
    assert_int_equal(sp_ckpt_wait_all(ck, &e), SP_EINVAL);
    assert_non_null(strstr(e.msg, "commit without sp_ckpt_begin"));
    /* The engine goes on. */
    float *b5;
    write_simple(ck, 5, 16, &b5);
    OK(sp_ckpt_wait_all(ck, E));
    sp_ckpt_stats stats;
    sp_ckpt_get_stats(ck, &stats);
    assert_int_equal(stats.n_done, 2);
    assert_int_equal(stats.n_failed, g_size > 1 ? 4 : 3);
    if (g_rank == 0) {
        char latest[256];
        read_latest(dir, latest, sizeof latest);
        assert_string_equal(latest, "ckpt-00000005.h5");
        assert_int_equal(count_entries(dir, ".tmp"), 0);
    }
    OK(sp_ckpt_destroy(ck, E));
    free(b1);
    free(b5);
}

/* ---- disk full (tmpfs of 2 MiB; needs root) ------------------------------------------------ */

static char g_mnt[600];
static int g_mounted;

static int unmount_tmpfs(void **state) {
    (void)state;
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0 && g_mounted) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "umount '%s'", g_mnt);
        if (system(cmd) != 0) fprintf(stderr, "warning: could not unmount %s\n", g_mnt);
    }
    g_mounted = 0;
    return 0;
}

/* Write one u8 dataset "big" of rows × 1024 random bytes (incompressible). */
static sp_status write_random(sp_ckpt *ck, int64_t step, int64_t rows, unsigned char **buf,
                              sp_err *e) {
    int64_t shape[2] = {rows, 1024}, b, en;
    split_rows(0, rows, g_rank, g_size, &b, &en);
    *buf = malloc((size_t)((en - b) * 1024) + 1);
    uint64_t s = 0x9e3779b97f4a7c15ULL * (uint64_t)(g_rank + 1) + (uint64_t)step;
    for (int64_t i = 0; i < (en - b) * 1024; i++) (*buf)[i] = (unsigned char)(xorshift(&s) >> 24);
    sp_status st = sp_ckpt_begin(ck, step, e);
    if (st == SP_OK) st = sp_ckpt_put_rows(ck, "big", SP_CKPT_U8, 2, shape, b, en - b, *buf, e);
    if (st == SP_OK) st = sp_ckpt_commit(ck, e);
    return st;
}

static void check_state_after_enospc(sp_ckpt *ck, const char *dir) {
    char latest[256];
    if (g_rank == 0) {
        read_latest(dir, latest, sizeof latest);
        assert_string_equal(latest, "ckpt-00000001.h5");
        assert_int_equal(count_entries(dir, ".tmp"), 0);
        assert_int_equal(count_entries(dir, "ckpt-"), 1);
    }
    sp_ckpt_reader *r = NULL;
    char warn[512];
    OK(sp_ckpt_open_latest(ck, &r, warn, sizeof warn, E));
    assert_int_equal(sp_ckpt_reader_step(r), 1);
    assert_string_equal(warn, "");
    item it = {"w", SP_CKPT_F32, 2, {64, 8}, 0, NULL, 0, 0, 8};
    check_item(r, &it, 1);
    sp_ckpt_reader_close(r);
}

static void test_disk_full(void **state) {
    (void)state;
    snprintf(g_mnt, sizeof g_mnt, "%s/tmpfs", g_base);
    int ok = 0;
    if (g_rank == 0) {
        mkdir(g_mnt, 0777);
        char cmd[700];
        snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=2m tmpfs '%s' 2>/dev/null", g_mnt);
        ok = system(cmd) == 0;
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    g_mounted = ok;
    if (!ok) skip(); /* not root, or no mount permission in this container */

    sp_ckpt *ck = make_engine(g_mnt, 2, SP_CKPT_NONE);
    float *b1;
    write_simple(ck, 1, 64, &b1); /* 2 KiB: fits */
    OK(sp_ckpt_wait_all(ck, E));
    unsigned char *big;
    sp_err e = {SP_OK, ""};
    OK(write_random(ck, 2, 4096, &big, E)); /* 4 MiB: does not fit */
    assert_int_equal(sp_ckpt_wait_all(ck, &e), SP_EIO);
    if (g_rank == 0) fprintf(stderr, "disk full (uncompressed): %s\n", e.msg);
    assert_non_null(strstr(e.msg, "ckpt-00000002.h5: no space left on device"));
    assert_non_null(strstr(e.msg, "'latest' unchanged"));
    free(big);
    check_state_after_enospc(ck, g_mnt);
    OK(sp_ckpt_destroy(ck, E));

    /* Compressed: no up-front size check, so the collective write itself hits ENOSPC. */
    ck = make_engine(g_mnt, 2, SP_CKPT_GZIP);
    OK(write_random(ck, 3, 4096, &big, E));
    /* Where the failure shows depends on the MPI-IO layer: a failed collective write is
     * reported by wait_buffer(big); a write that MPI-IO lost silently is caught by the
     * read-back verification after close, reported by wait_all. Exactly one of them reports. */
    sp_err e2 = {SP_OK, ""};
    sp_status s1 = sp_ckpt_wait_buffer(ck, big, &e), s2 = sp_ckpt_wait_all(ck, &e2);
    assert_true((s1 == SP_EIO && s2 == SP_OK) || (s1 == SP_OK && s2 == SP_EIO));
    const char *msg = s1 == SP_EIO ? e.msg : e2.msg;
    if (g_rank == 0) fprintf(stderr, "disk full (gzip, %s): %s\n", s1 ? "wait_buffer" : "wait_all",
                             msg);
    assert_non_null(strstr(msg, "ckpt-00000003.h5: no space left on device"));
    assert_non_null(strstr(msg, "'latest' unchanged"));
    free(big);
    check_state_after_enospc(ck, g_mnt);
    /* And the engine still writes checkpoints that fit. */
    float *b4;
    write_simple(ck, 4, 64, &b4);
    OK(sp_ckpt_wait_all(ck, E));
    if (g_rank == 0) {
        char latest[256];
        read_latest(g_mnt, latest, sizeof latest);
        assert_string_equal(latest, "ckpt-00000004.h5");
    }
    OK(sp_ckpt_destroy(ck, E));
    free(b1);
    free(b4);
}

static void test_bad_options(void **state) {
    (void)state;
    char dir[600];
    fresh_dir(dir, sizeof dir, "opts");
    sp_ckpt_opts o;
    sp_ckpt_opts_default(&o);
    assert_int_equal(o.keep, 2);
    o.keep = 0;
    sp_ckpt *ck = NULL;
    sp_err e = {SP_OK, ""};
    assert_int_equal(sp_ckpt_create(&ck, MPI_COMM_WORLD, dir, &o, &e), SP_EINVAL);
    assert_null(ck);
    assert_non_null(strstr(e.msg, "keep"));
    sp_ckpt_opts_default(&o);
    o.compress = SP_CKPT_GZIP;
    o.level = 10;
    assert_int_equal(sp_ckpt_create(&ck, MPI_COMM_WORLD, dir, &o, &e), SP_EINVAL);
    /* Bad names are refused at put time. */
    ck = make_engine(dir, 1, SP_CKPT_NONE);
    float x[1] = {0};
    int64_t sh[1] = {g_size};
    OK(sp_ckpt_begin(ck, 1, E));
    assert_int_equal(sp_ckpt_put_rows(ck, "/abs", SP_CKPT_F32, 1, sh, g_rank, 1, x, &e),
                     SP_EINVAL);
    OK(sp_ckpt_commit(ck, E));
    assert_int_equal(sp_ckpt_wait_all(ck, &e), SP_EINVAL);
    assert_non_null(strstr(e.msg, "bad dataset name"));
    OK(sp_ckpt_begin(ck, 2, E));
    OK(sp_ckpt_put_rows(ck, "a", SP_CKPT_F32, 1, sh, g_rank, 1, x, E));
    assert_int_equal(sp_ckpt_put_rows(ck, "a/b", SP_CKPT_F32, 1, sh, g_rank, 1, x, &e),
                     SP_EINVAL);
    assert_non_null(strstr(e.msg, "clashes"));
    assert_int_equal(sp_ckpt_put_attr_i64(ck, "complete", 1, &e), SP_EINVAL);
    OK(sp_ckpt_commit(ck, E));
    assert_int_equal(sp_ckpt_wait_buffer(ck, x, &e), SP_EINVAL);
    assert_non_null(strstr(e.msg, "clashes")); /* the first error of the description */
    /* Beginning twice fails the open description too. */
    OK(sp_ckpt_begin(ck, 3, E));
    assert_int_equal(sp_ckpt_begin(ck, 4, &e), SP_EINVAL);
    OK(sp_ckpt_commit(ck, E));
    assert_int_equal(sp_ckpt_wait_all(ck, &e), SP_EINVAL);
    assert_non_null(strstr(e.msg, "still being described"));
    OK(sp_ckpt_destroy(ck, E));
}

int main(int argc, char **argv) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (provided != MPI_THREAD_MULTIPLE) {
        fprintf(stderr, "test_ckpt: MPI_THREAD_MULTIPLE is not available\n");
        MPI_Finalize();
        return 1;
    }
    long pid = (long)getpid();
    MPI_Bcast(&pid, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    snprintf(g_base, sizeof g_base, "/tmp/sp_test_ckpt.%ld", pid);
    if (g_rank == 0) mkdir(g_base, 0777);
    MPI_Barrier(MPI_COMM_WORLD);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_and_latest),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_wait_buffer),
        cmocka_unit_test(test_corruption),
        cmocka_unit_test(test_missing_partial_incomplete),
        cmocka_unit_test(test_gzip),
        cmocka_unit_test(test_zstd),
        cmocka_unit_test(test_fewer_ranks),
        cmocka_unit_test(test_async_error_reporting),
        cmocka_unit_test_teardown(test_disk_full, unmount_tmpfs),
        cmocka_unit_test(test_bad_options),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL), any = 0;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (g_rank == 0) rm_rf(g_base);
    MPI_Finalize();
    return any;
}
