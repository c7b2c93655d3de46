/* shards_test_util.h — helpers shared by the shards/ unit tests (header-only, static).
 *
 * Everything is built in mkdtemp directories from the bundled model; models/ is never
 * modified. The safetensors helpers load the bundled file into memory as (header JSON, data
 * area) so a test can change the header and write a deliberately broken copy.
 */
#ifndef SHARDS_TEST_UTIL_H
#define SHARDS_TEST_UTIL_H

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shards/sp_model.h"
#include "shards/sp_safetensors.h"

#define ST_BUNDLED SP_TEST_MODEL_DIR "/model.safetensors"
#define BIN_BUNDLED SP_TEST_MODEL_DIR "/stories260K.bin"
#define CFG_BUNDLED SP_TEST_MODEL_DIR "/config.json"

/* Fresh temporary directory; path written into buf (>= 64 bytes). */
static inline void tu_tmpdir(char *buf, size_t cap) {
    const char *base = getenv("TMPDIR");
    snprintf(buf, cap, "%s/sp_shards_XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        abort();
    }
}

/* Remove a flat directory and its files. */
static inline void tu_rmdir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[4096];
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static inline unsigned char *tu_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (1L << 30)) {
        fclose(f);
        return NULL;
    }
    unsigned char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static inline void tu_write(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(buf, 1, len, f) != len)) abort();
    fclose(f);
}

static inline void tu_write_str(const char *path, const char *s) { tu_write(path, s, strlen(s)); }

static inline void tu_copy(const char *src, const char *dst) {
    size_t n = 0;
    unsigned char *b = tu_read(src, &n);
    if (!b) abort();
    tu_write(dst, b, n);
    free(b);
}

/* dir/name into buf. */
static inline const char *tu_path(char *buf, size_t cap, const char *dir, const char *name) {
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

/* The bundled model.safetensors in memory. */
typedef struct {
    cJSON *hdr;
    unsigned char *file;
    size_t file_len;
    const unsigned char *data;
    size_t data_len;
} tu_st;

static inline void tu_st_load(tu_st *s, const char *path) {
    s->file = tu_read(path, &s->file_len);
    if (!s->file) abort();
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = (h << 8) | s->file[i];
    s->hdr = cJSON_ParseWithLength((const char *)s->file + 8, (size_t)h);
    if (!s->hdr) abort();
    s->data = s->file + 8 + h;
    s->data_len = s->file_len - 8 - (size_t)h;
}

static inline void tu_st_free(tu_st *s) {
    cJSON_Delete(s->hdr);
    free(s->file);
}

/* Write header (as is, unpadded) + data_len bytes of data to path. */
static inline void tu_st_write_raw(const char *path, const cJSON *hdr, const unsigned char *data,
                                   size_t data_len) {
    char *text = cJSON_PrintUnformatted(hdr);
    uint64_t h = strlen(text);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(h >> (8 * i));
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fwrite(len8, 1, 8, f);
    fwrite(text, 1, h, f);
    if (data_len) fwrite(data, 1, data_len, f);
    fclose(f);
    cJSON_free(text);
}

/* The header entry of a tensor (aborts if absent). */
static inline cJSON *tu_st_entry(const tu_st *s, const char *name) {
    cJSON *e = cJSON_GetObjectItemCaseSensitive(s->hdr, name);
    if (!e) abort();
    return e;
}

static inline void tu_set_pair(cJSON *entry, const char *key, double a, double b) {
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, cJSON_CreateNumber(a));
    cJSON_AddItemToArray(arr, cJSON_CreateNumber(b));
    cJSON_ReplaceItemInObjectCaseSensitive(entry, key, arr);
}

/* Make a model directory dir with the bundled config.json, tokenizer files and the given
 * safetensors content (written by the caller afterwards). */
static inline void tu_model_dir_config(const char *dir) {
    char p[4096];
    tu_copy(CFG_BUNDLED, tu_path(p, sizeof p, dir, "config.json"));
}

/* 1 if msg contains every one of the NULL-terminated needles; prints the message if not. */
static inline int tu_msg_has(const char *msg, ...) {
    va_list ap;
    va_start(ap, msg);
    int ok = 1;
    const char *needle;
    while ((needle = va_arg(ap, const char *)) != NULL) {
        if (!strstr(msg, needle)) {
            fprintf(stderr, "message lacks \"%s\": %s\n", needle, msg);
            ok = 0;
        }
    }
    va_end(ap);
    return ok;
}

#endif
