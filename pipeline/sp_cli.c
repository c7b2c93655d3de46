/* sp_cli.c — see sp_cli.h. */
#include "pipeline/sp_cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sp_status sp_cli_int(const char *opt, const char *val, long lo, long hi, long *out, sp_err *err) {
    SP_RETURN_IF(!val || !*val, err, SP_EINVAL, "%s: missing value", opt);
    char *end = NULL;
    errno = 0;
    long v = strtol(val, &end, 10);
    SP_RETURN_IF(errno || *end, err, SP_EINVAL, "%s: '%s' is not an integer", opt, val);
    SP_RETURN_IF(v < lo || v > hi, err, SP_EINVAL, "%s: %ld is outside %ld..%ld", opt, v, lo, hi);
    *out = v;
    return SP_OK;
}

sp_status sp_cli_double(const char *opt, const char *val, double lo, double hi, double *out,
                        sp_err *err) {
    SP_RETURN_IF(!val || !*val, err, SP_EINVAL, "%s: missing value", opt);
    char *end = NULL;
    errno = 0;
    double v = strtod(val, &end);
    SP_RETURN_IF(errno || *end || !isfinite(v), err, SP_EINVAL, "%s: '%s' is not a number", opt,
                 val);
    SP_RETURN_IF(v < lo || v > hi, err, SP_EINVAL, "%s: %g is outside %g..%g", opt, v, lo, hi);
    *out = v;
    return SP_OK;
}

sp_status sp_cli_int_list(const char *opt, const char *val, long lo, long hi, int *out, int max,
                          int *n, sp_err *err) {
    SP_RETURN_IF(!val || !*val, err, SP_EINVAL, "%s: missing value", opt);
    char buf[256];
    SP_RETURN_IF(strlen(val) >= sizeof buf, err, SP_EINVAL, "%s: list too long", opt);
    strcpy(buf, val);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        SP_RETURN_IF(*n >= max, err, SP_EINVAL, "%s: more than %d values", opt, max);
        long v = 0;
        SP_FORWARD(sp_cli_int(opt, tok, lo, hi, &v, err));
        out[(*n)++] = (int)v;
    }
    SP_RETURN_IF(*n == 0, err, SP_EINVAL, "%s: empty list", opt);
    return SP_OK;
}

sp_status sp_module_map_read(const char *path, const char *what, sp_module_map_value_fn value,
                             const char *expect, sp_bits_map *map, sp_err *err) {
    memset(map, 0, sizeof *map);
    FILE *f = fopen(path, "r");
    SP_RETURN_IF(!f, err, SP_EIO, "%s: cannot open %s", path, what);
    int cap = 0, lineno = 0;
    char line[1024];
    sp_status st = SP_OK;
    while (st == SP_OK && fgets(line, sizeof line, f)) {
        lineno++;
        char name[900], tok[32];
        int v = -1;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\0') continue;
        if (sscanf(p, "%899s %31s", name, tok) != 2 || (v = value(tok)) < 0) {
            st = sp_err_set(err, SP_EFORMAT, "%s: line %d: expected 'module_name %s", path,
                            lineno, expect);
            break;
        }
        if (map->n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(map->names, sizeof(char *) * (size_t)cap);
            if (nn) map->names = nn;
            int *nb = nn ? realloc(map->bits, sizeof(int) * (size_t)cap) : NULL;
            if (nb) map->bits = nb;
            if (!nn || !nb) {
                st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", path);
                break;
            }
        }
        map->names[map->n] = strdup(name);
        if (!map->names[map->n]) {
            st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", path);
            break;
        }
        map->bits[map->n++] = v;
    }
    fclose(f);
    return st;
}

/* bits 2..8; sscanf as before, so "3" and "3 # note" read the same. */
static int bits_value(const char *tok) {
    int b = 0;
    return sscanf(tok, "%d", &b) == 1 && b >= 2 && b <= 8 ? b : -1;
}

sp_status sp_bits_map_read(const char *path, sp_bits_map *map, sp_err *err) {
    return sp_module_map_read(path, "bits map", bits_value, "bits' with bits in 2..8", map, err);
}

void sp_bits_map_free(sp_bits_map *map) {
    for (int i = 0; i < map->n; i++) free(map->names[i]);
    free(map->names);
    free(map->bits);
    memset(map, 0, sizeof *map);
}
