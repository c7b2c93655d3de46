/* ckpt_test_util.h — helpers of test_ckpt.c: MPI-aware scratch directories, data patterns,
 * uneven row splits, and small HDF5 probes that run on the engine's I/O thread.
 * Test code: file-scope state is fine here (the no-globals rule is for the library).
 */
#ifndef CKPT_TEST_UTIL_H
#define CKPT_TEST_UTIL_H

#define _XOPEN_SOURCE 700 /* nftw */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt/sp_ckpt.h"
#include "mpi/sp_mpi.h"

static int g_rank, g_size;
static char g_base[512]; /* per-run scratch root, same path on every rank */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static void rm_rf(const char *p) { (void)nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

/* A fresh, empty directory g_base/name (collective). */
static void fresh_dir(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", g_base, name);
    if (g_rank == 0) {
        rm_rf(out);
        mkdir(out, 0777);
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

/* Deterministic value of element g of dataset k, as bytes of dtype dt. */
static void pattern(sp_ckpt_dtype dt, int k, int64_t g0, int64_t n, void *buf) {
    for (int64_t i = 0; i < n; i++) {
        int64_t g = g0 + i;
        switch (dt) {
        case SP_CKPT_U8: ((uint8_t *)buf)[i] = (uint8_t)(g * 7 + k); break;
        case SP_CKPT_I32: ((int32_t *)buf)[i] = (int32_t)(uint32_t)((uint64_t)g * 2654435761u + (uint64_t)k); break;
        case SP_CKPT_I64: ((int64_t *)buf)[i] = g * 1000003 - k; break;
        case SP_CKPT_F32: ((float *)buf)[i] = (float)g * 0.5f + (float)k; break;
        case SP_CKPT_F64: ((double *)buf)[i] = (double)g * 0.25 - k; break;
        }
    }
}

/* Rows [b, e) of n for rank r: 0 = block, 1 = reversed blocks (rank order != row order),
 * 2 = weights r+1 with the last rank getting none (when size > 1). */
static void split_rows(int mode, int64_t n, int r, int size, int64_t *b, int64_t *e) {
    size_t sb, se;
    if (mode == 0 || (mode == 2 && size == 1)) {
        sp_mpi_split_range((size_t)n, r, size, &sb, &se);
    } else if (mode == 1) {
        sp_mpi_split_range((size_t)n, size - 1 - r, size, &sb, &se);
    } else {
        int64_t wsum = (int64_t)(size - 1) * size / 2, acc = 0;
        for (int q = 0; q < r && q < size - 1; q++) acc += q + 1;
        sb = (size_t)(n * acc / wsum);
        se = r == size - 1 ? sb : (size_t)(n * (acc + r + 1) / wsum);
        if (r == size - 1) sb = se = (size_t)n;
    }
    *b = (int64_t)sb;
    *e = (int64_t)se;
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int file_exists(const char *dir, const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static void read_latest(const char *dir, char *buf, size_t cap) {
    char p[1024];
    snprintf(p, sizeof p, "%s/latest", dir);
    buf[0] = '\0';
    FILE *f = fopen(p, "r");
    if (!f) return;
    if (!fgets(buf, (int)cap, f)) buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
}

/* Number of directory entries whose name contains sub. */
static int count_entries(const char *dir, const char *sub) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strstr(e->d_name, sub)) n++;
    closedir(d);
    return n;
}

/* ---- HDF5 probes, run through sp_ckpt_run_on_io ---- */

typedef struct {
    char path[1024];
    char dset[128];
    haddr_t offset;  /* out: H5Dget_offset       */
    int filter;      /* out: first filter id, -1 */
    int64_t step;    /* in: step attribute for make_incomplete */
    pthread_t tid;   /* out: thread it ran on    */
} probe;

static sp_status probe_dset(void *arg, sp_err *err) {
    probe *p = arg;
    p->tid = pthread_self();
    hid_t f = H5Fopen(p->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f >= 0 ? H5Dopen2(f, p->dset, H5P_DEFAULT) : -1;
    hid_t dcpl = d >= 0 ? H5Dget_create_plist(d) : -1;
    sp_status st = (f < 0 || d < 0 || dcpl < 0) ? sp_err_set(err, SP_EIO, "%s: probe", p->path)
                                                : SP_OK;
    if (st == SP_OK) {
        p->offset = H5Dget_offset(d);
        unsigned flags = 0, cd[4];
        size_t ncd = 4;
        char name[64];
        p->filter = H5Pget_nfilters(dcpl) > 0
                        ? (int)H5Pget_filter2(dcpl, 0, &flags, &ncd, cd, sizeof name, name, NULL)
                        : -1;
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    return st;
}

/* An HDF5 file that looks like a checkpoint but lacks the final 'complete' attribute. */
static sp_status make_incomplete(void *arg, sp_err *err) {
    probe *p = arg;
    hid_t f = H5Fcreate(p->path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return sp_err_set(err, SP_EIO, "%s: create", p->path);
    hid_t s = H5Screate(H5S_SCALAR), t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 16);
    hid_t a = H5Acreate2(f, "format", t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, "shardpress-ckpt");
    H5Aclose(a);
    a = H5Acreate2(f, "version", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    int64_t one = 1;
    H5Awrite(a, H5T_NATIVE_INT64, &one);
    H5Aclose(a);
    a = H5Acreate2(f, "step", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &p->step);
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(s);
    H5Fclose(f);
    return SP_OK;
}

static sp_status fail_fn(void *arg, sp_err *err) {
    (void)arg;
    return sp_err_set(err, SP_EFORMAT, "probe: deliberate failure");
}

#endif
