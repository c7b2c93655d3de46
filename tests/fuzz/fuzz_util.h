/* fuzz_util.h — shared by the libFuzzer targets of tests/fuzz (issue 13).
 *
 * Most readers of shardpress take a path (and mmap or fopen it), so a target writes each input
 * to a file in a private directory on a RAM file system (/dev/shm when writable, else
 * $TMPDIR or /tmp) and calls the production entry point on that path: the fuzzed code is the
 * code that reads real files, down to the mmap, with no copy of it and no test-only variant.
 * The directory is made once per process and removed at exit. Test code: globals are fine.
 */
#ifndef SP_FUZZ_UTIL_H
#define SP_FUZZ_UTIL_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_dir_[512];

static inline void fuzz_cleanup_(void) {
    if (!fuzz_dir_[0]) return;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_);
    if (system(cmd) != 0) { /* best effort */ }
}

/* The private directory (created on first use). */
static inline const char *fuzz_dir(void) {
    if (fuzz_dir_[0]) return fuzz_dir_;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(fuzz_dir_, sizeof fuzz_dir_, "%s/sp-fuzz.XXXXXX", base);
    if (!mkdtemp(fuzz_dir_)) {
        perror("mkdtemp");
        abort();
    }
    atexit(fuzz_cleanup_);
    return fuzz_dir_;
}

/* Write n bytes to <dir>/name (replacing it); returns the path (static buffer). */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t n) {
    static char path[2048];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(path);
        abort();
    }
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, data + done, n - done);
        if (w <= 0) {
            perror(path);
            abort();
        }
        done += (size_t)w;
    }
    close(fd);
    return path;
}

/* A NUL-terminated copy of the input (malloc'ed). */
static inline char *fuzz_strdup(const uint8_t *data, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

#endif
