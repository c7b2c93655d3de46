/* sp_text.c — read a whole text file and check that it is strict UTF-8 (see sp_model.h).
 *
 * Strict UTF-8 (RFC 3629), by lead byte:
 *   00..7F                 1 byte
 *   C2..DF 80..BF          2 bytes      (C0, C1 would be overlong encodings of ASCII)
 *   E0 A0..BF 80..BF       3 bytes      (E0 80..9F would be overlong)
 *   E1..EC 80..BF 80..BF
 *   ED 80..9F 80..BF                    (ED A0..BF would be UTF-16 surrogates D800..DFFF)
 *   EE..EF 80..BF 80..BF
 *   F0 90..BF 80..BF 80..BF 4 bytes     (F0 80..8F would be overlong)
 *   F1..F3 80..BF x3
 *   F4 80..8F 80..BF 80..BF             (above would exceed U+10FFFF)
 *   80..BF alone, F5..FF: never valid.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shards/sp_model.h"

/* @return the offset of the first byte of the first invalid sequence, or len if all valid. */
static size_t utf8_first_invalid(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int need;
        unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            return i;
        }
        if (len - i <= (size_t)need) return i; /* sequence cut off by the end of the file */
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (int k = 2; k <= need; k++)
            if ((s[i + (size_t)k] & 0xc0) != 0x80) return i;
        i += (size_t)need + 1;
    }
    return len;
}

size_t sp_text_utf8_valid_len(const char *s, size_t len) {
    return utf8_first_invalid((const unsigned char *)s, len);
}

sp_status sp_text_read_file(const char *path, char **out, size_t *len, sp_err *err) {
    *out = NULL;
    if (len) *len = 0;
    sp_status st = SP_OK;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sp_err_set(err, errno == ENOENT ? SP_ENOTFOUND : SP_EIO, "%s: cannot open: %s",
                          path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = sp_err_set(err, SP_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    if (S_ISDIR(sb.st_mode)) {
        st = sp_err_set(err, SP_EIO, "%s: is a directory, not a text file", path);
        goto done;
    }
    /* Regular files: read exactly their size (+1 for the NUL); pipes: grow as needed. */
    cap = (S_ISREG(sb.st_mode) ? (size_t)sb.st_size : 0) + 1;
    if (cap < 4096 && !S_ISREG(sb.st_mode)) cap = 4096;
    buf = sp_malloc(cap, err, path);
    if (!buf) {
        st = SP_ENOMEM;
        goto done;
    }
    for (;;) {
        if (n + 1 >= cap) {
            /* Full: probe for EOF with one byte before growing (the usual case for a
             * regular file, whose size we allocated exactly). */
            char extra;
            ssize_t r1 = read(fd, &extra, 1);
            if (r1 == 0) break;
            if (r1 < 0) {
                if (errno == EINTR) continue;
                st = sp_err_set(err, SP_EIO, "%s: read failed: %s", path, strerror(errno));
                goto done;
            }
            size_t ncap = cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                st = sp_err_set(err, SP_ENOMEM, "%s: out of memory reading %zu bytes", path, ncap);
                goto done;
            }
            buf = nb;
            cap = ncap;
            buf[n++] = extra;
            continue;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            st = sp_err_set(err, SP_EIO, "%s: read failed: %s", path, strerror(errno));
            goto done;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    if (n == 0) {
        st = sp_err_set(err, SP_EFORMAT, "%s: file is empty", path);
        goto done;
    }
    size_t bad = utf8_first_invalid((const unsigned char *)buf, n);
    if (bad < n) {
        st = sp_err_set(err, SP_EFORMAT, "%s: not valid UTF-8 at byte offset %zu (byte 0x%02X)",
                        path, bad, (unsigned)(unsigned char)buf[bad]);
        goto done;
    }
    *out = buf;
    buf = NULL;
    if (len) *len = n;
done:
    free(buf);
    close(fd);
    return st;
}
