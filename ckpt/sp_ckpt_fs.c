/* sp_ckpt_fs.c — the file-system side of the commit protocol: names, fsync, the `latest`
 * pointer, pruning. No HDF5 and no MPI here; rank 0's I/O thread calls these.
 *
 * Durability: a checkpoint is published by rename(2) of a closed and fsync'ed file, followed
 * by an fsync of the directory (the rename itself lives in the directory). `latest` is
 * replaced the same way, so after a crash it names either the old or the new checkpoint,
 * never a half-written line.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "ckpt/sp_ckpt_int.h"

sp_status sp_ck_mkdirs(const char *dir, sp_err *err) {
    size_t n = strlen(dir);
    SP_RETURN_IF(n == 0 || n >= 4096, err, SP_EINVAL, "checkpoint directory: bad path \"%s\"",
                 dir);
    char path[4096];
    memcpy(path, dir, n + 1);
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(path, 0777) != 0 && errno != EEXIST)
                return sp_err_set(err, SP_EIO, "%s: cannot create directory: %s", path,
                                  strerror(errno));
            *p = c;
            if (c == '\0') break;
        }
    }
    struct stat sb;
    SP_RETURN_IF(stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode), err, SP_EIO,
                 "%s: not a directory", dir);
    return SP_OK;
}

sp_status sp_ck_fsync_path(const char *path, int is_dir, sp_err *err) {
    int fd = open(path, is_dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    SP_RETURN_IF(fd < 0, err, SP_EIO, "%s: cannot open for fsync: %s", path, strerror(errno));
    int rc = fsync(fd), e = errno;
    close(fd);
    SP_RETURN_IF(rc != 0, err, SP_EIO, "%s: fsync: %s", path, strerror(e));
    return SP_OK;
}

static char *join(const char *dir, const char *fmt, int64_t step) {
    size_t n = strlen(dir) + 64;
    char *p = malloc(n);
    if (!p) return NULL;
    int k = snprintf(p, n, "%s/", dir);
    snprintf(p + k, n - (size_t)k, fmt, (long long)step);
    return p;
}

char *sp_ck_final_path(const char *dir, int64_t step) { return join(dir, "ckpt-%08lld.h5", step); }

char *sp_ck_tmp_path(const char *dir, int64_t step) {
    return join(dir, ".ckpt-%08lld.h5.tmp", step);
}

int64_t sp_ck_parse_name(const char *name, int tmp) {
    const char *pre = tmp ? ".ckpt-" : "ckpt-", *suf = tmp ? ".h5.tmp" : ".h5";
    size_t np = strlen(pre), ns = strlen(suf), n = strlen(name);
    if (n <= np + ns || strncmp(name, pre, np) != 0 || strcmp(name + n - ns, suf) != 0) return -1;
    int64_t v = 0;
    size_t nd = n - np - ns;
    if (nd < 8 || nd > 18) return -1; /* %08lld: at least 8 digits; no overflow */
    for (size_t i = np; i < n - ns; i++) {
        if (name[i] < '0' || name[i] > '9') return -1;
        v = v * 10 + (name[i] - '0');
    }
    return v;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

sp_status sp_ck_list_steps(const char *dir, int tmp, int64_t **steps, int *n, sp_err *err) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    SP_RETURN_IF(!d, err, SP_EIO, "%s: cannot list: %s", dir, strerror(errno));
    int64_t *v = NULL;
    int cnt = 0, cap = 0;
    sp_status st = SP_OK;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        int64_t s = sp_ck_parse_name(e->d_name, tmp);
        if (s < 0) continue;
        if (cnt == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *nv = realloc(v, (size_t)cap * sizeof *nv);
            if (!nv) {
                st = sp_err_set(err, SP_ENOMEM, "%s: out of memory listing checkpoints", dir);
                break;
            }
            v = nv;
        }
        v[cnt++] = s;
    }
    closedir(d);
    if (st != SP_OK) {
        free(v);
        return st;
    }
    if (cnt) qsort(v, (size_t)cnt, sizeof *v, cmp_i64);
    *steps = v;
    *n = cnt;
    return SP_OK;
}

sp_status sp_ck_write_latest(const char *dir, const char *name, sp_err *err) {
    char tmp[4200], fin[4200];
    snprintf(tmp, sizeof tmp, "%s/.latest.tmp", dir);
    snprintf(fin, sizeof fin, "%s/latest", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    SP_RETURN_IF(fd < 0, err, SP_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    char line[300];
    int len = snprintf(line, sizeof line, "%s\n", name);
    ssize_t w = write(fd, line, (size_t)len);
    int e = errno;
    int rc = (w == len) ? fsync(fd) : -1;
    if (w == len && rc != 0) e = errno;
    close(fd);
    if (w != len || rc != 0) {
        (void)unlink(tmp);
        return sp_err_set(err, SP_EIO, "%s: cannot write: %s", tmp,
                          w >= 0 && w != len ? "short write" : strerror(e));
    }
    if (rename(tmp, fin) != 0) {
        e = errno;
        (void)unlink(tmp);
        return sp_err_set(err, SP_EIO, "%s: cannot rename %s to it: %s", fin, tmp, strerror(e));
    }
    return sp_ck_fsync_path(dir, 1, err);
}

sp_status sp_ck_read_latest(const char *dir, char *buf, size_t cap, sp_err *err) {
    char fin[4200];
    snprintf(fin, sizeof fin, "%s/latest", dir);
    buf[0] = '\0';
    FILE *f = fopen(fin, "r");
    if (!f) {
        SP_RETURN_IF(errno != ENOENT, err, SP_EIO, "%s: cannot open: %s", fin, strerror(errno));
        return SP_OK;
    }
    if (!fgets(buf, (int)cap, f)) buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    return SP_OK;
}

int64_t sp_ck_free_bytes(const char *dir) {
    struct statvfs sv;
    if (statvfs(dir, &sv) != 0) return -1;
    return (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
}

void sp_ck_fmt_bytes(char *buf, size_t cap, double b) {
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024.0 && u < 4) {
        b /= 1024.0;
        u++;
    }
    snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
}

static sp_status remove_step(const char *dir, int64_t s, int tmp, sp_err *err) {
    char *p = tmp ? sp_ck_tmp_path(dir, s) : sp_ck_final_path(dir, s);
    SP_RETURN_IF(!p, err, SP_ENOMEM, "%s: out of memory", dir);
    sp_status st = SP_OK;
    if (unlink(p) != 0 && errno != ENOENT)
        st = sp_err_set(err, SP_EIO, "%s: cannot delete old checkpoint: %s", p, strerror(errno));
    free(p);
    return st;
}

sp_status sp_ck_prune(const char *dir, int64_t step, int keep, sp_err *err) {
    int64_t *v = NULL;
    int n = 0;
    SP_FORWARD(sp_ck_list_steps(dir, 0, &v, &n, err));
    sp_status st = SP_OK;
    /* Ascending steps: files above `step` are leftovers of an earlier run that this run
     * superseded; of those at or below it, the newest `keep` stay. */
    int kept = 0;
    for (int i = n - 1; i >= 0 && st == SP_OK; i--) {
        if (v[i] > step || (v[i] <= step && kept >= keep))
            st = remove_step(dir, v[i], 0, err);
        else
            kept++;
    }
    free(v);
    if (st != SP_OK) return st;
    SP_FORWARD(sp_ck_list_steps(dir, 1, &v, &n, err));
    for (int i = 0; i < n && st == SP_OK; i++) st = remove_step(dir, v[i], 1, err);
    free(v);
    return st;
}
