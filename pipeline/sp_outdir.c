/* sp_outdir.c — see sp_outdir.h. */
#define _XOPEN_SOURCE 700
#include "pipeline/sp_outdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void sp_outdir_rmtree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Issue 21: a checkpoint directory under a read-only parent used to fail later, at its first
 * file, with "No such file or directory"; each component's own errno is the real cause. */
sp_status sp_outdir_mkdirs(const char *dir, const char *what, sp_err *err) {
    char path[4096];
    size_t n = strlen(dir);
    SP_RETURN_IF(n == 0 || n >= sizeof path, err, SP_EINVAL, "%s: bad path for the %s", dir, what);
    memcpy(path, dir, n + 1);
    struct stat sb;
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (stat(path, &sb) != 0 && mkdir(path, 0755) != 0 && errno != EEXIST)
            return sp_err_set(err, SP_EIO, "%s: cannot create the %s: %s", path, what,
                              strerror(errno));
        *p = c;
        if (c == '\0') break;
    }
    SP_RETURN_IF(stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode), err, SP_EIO,
                 "%s: the %s is not a directory", dir, what);
    SP_RETURN_IF(access(dir, W_OK | X_OK) != 0, err, SP_EIO, "%s: the %s is not writable: %s",
                 dir, what, strerror(errno));
    return SP_OK;
}

sp_status sp_outdir_begin(const char *out, int force, char *partial, size_t cap, sp_err *err) {
    struct stat sb;
    SP_RETURN_IF(!force && stat(out, &sb) == 0, err, SP_EEXIST,
                 "%s: output directory already exists (use --force to replace it)", out);
    SP_RETURN_IF((size_t)snprintf(partial, cap, "%s.partial", out) >= cap, err, SP_EINVAL,
                 "%s: path too long", out);
    if (stat(partial, &sb) == 0) sp_outdir_rmtree(partial);
    SP_RETURN_IF(mkdir(partial, 0755) != 0, err, SP_EIO, "%s: cannot create: %s", partial,
                 strerror(errno));
    return SP_OK;
}

sp_status sp_outdir_commit(const char *out, int force, sp_err *err) {
    char partial[4096], old[4096];
    snprintf(partial, sizeof partial, "%s.partial", out);
    snprintf(old, sizeof old, "%s.old.%ld", out, (long)getpid());
    struct stat sb;
    int had_old = 0;
    if (stat(out, &sb) == 0) {
        SP_RETURN_IF(!force, err, SP_EEXIST, "%s: appeared while the job ran; output left in %s",
                     out, partial);
        SP_RETURN_IF(rename(out, old) != 0, err, SP_EIO, "%s: cannot move aside: %s", out,
                     strerror(errno));
        had_old = 1;
    }
    if (rename(partial, out) != 0) {
        int e = errno;
        if (had_old) rename(old, out);
        return sp_err_set(err, SP_EIO, "%s: cannot rename from %s: %s", out, partial, strerror(e));
    }
    if (had_old) sp_outdir_rmtree(old);
    return SP_OK;
}

void sp_outdir_abort(const char *out) {
    char partial[4096];
    snprintf(partial, sizeof partial, "%s.partial", out);
    sp_outdir_rmtree(partial);
}

sp_status sp_outdir_copy_file(const char *src, const char *dst, sp_err *err) {
    int in = open(src, O_RDONLY);
    SP_RETURN_IF(in < 0, err, SP_EIO, "%s: cannot open: %s", src, strerror(errno));
    int outfd = open(dst, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (outfd < 0) {
        close(in);
        return sp_err_set(err, SP_EIO, "%s: cannot create: %s", dst, strerror(errno));
    }
    char buf[1 << 16];
    sp_status st = SP_OK;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n == 0) break;
        if (n < 0 || write(outfd, buf, (size_t)n) != n) {
            st = sp_err_set(err, SP_EIO, "%s: copy to %s failed: %s", src, dst, strerror(errno));
            break;
        }
    }
    if (st == SP_OK && fsync(outfd) != 0)
        st = sp_err_set(err, SP_EIO, "%s: fsync failed: %s", dst, strerror(errno));
    close(in);
    close(outfd);
    return st;
}

static int is_tokenizer_file(const char *name) {
    static const char *fixed[] = {"tokenizer.json", "tokenizer_config.json",
                                  "special_tokens_map.json", "tokenizer.model", "tokenizer.bin"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (!strcmp(name, fixed[i])) return 1;
    size_t n = strlen(name);
    return n > 7 && !strncmp(name, "tok", 3) && !strcmp(name + n - 4, ".bin");
}

sp_status sp_outdir_copy_tokenizer(const char *model_dir, const char *dst_dir, sp_err *err) {
    char dir[4096];
    struct stat sb;
    snprintf(dir, sizeof dir, "%s", model_dir);
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) { /* a .bin model: look beside it */
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        else snprintf(dir, sizeof dir, ".");
    }
    DIR *d = opendir(dir);
    SP_RETURN_IF(!d, err, SP_EIO, "%s: cannot list: %s", dir, strerror(errno));
    int copied = 0;
    sp_status st = SP_OK;
    struct dirent *e;
    while (st == SP_OK && (e = readdir(d))) {
        if (!is_tokenizer_file(e->d_name)) continue;
        char src[8192], dst[8192];
        snprintf(src, sizeof src, "%s/%s", dir, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", dst_dir, e->d_name);
        st = sp_outdir_copy_file(src, dst, err);
        copied++;
    }
    closedir(d);
    if (st == SP_OK && copied == 0)
        st = sp_err_set(err, SP_ENOTFOUND, "%s: no tokenizer file (tokenizer.json, "
                        "tokenizer.bin, tok*.bin) to copy", dir);
    return st;
}
