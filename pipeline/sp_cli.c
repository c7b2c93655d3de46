/* sp_cli.c — see sp_cli.h. */
#include "pipeline/sp_cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sp_cli_print_json(struct cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

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

/* Issue 21 part 4: a line is exactly "NAME VALUE", optionally followed by a '#' comment. The
 * value must be a whole word ("3.9", "3bits" and "4 extra" are refused, not read as 3, 3 and
 * 4), a name may appear once (a duplicate used to win silently), and a line that does not fit
 * the buffer is an error instead of being read as two lines. */
sp_status sp_module_map_read(const char *path, const char *what, sp_module_map_value_fn value,
                             const char *expect, sp_bits_map *map, sp_err *err) {
    memset(map, 0, sizeof *map);
    FILE *f = fopen(path, "r");
    SP_RETURN_IF(!f, err, SP_EIO, "%s: cannot open %s: %s", path, what, strerror(errno));
    int cap = 0, lineno = 0;
    int *line_of = NULL; /* [n] line of each name, for the duplicate message */
    char line[1024];
    sp_status st = SP_OK;
    while (st == SP_OK && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
            st = sp_err_set(err, SP_EFORMAT, "%s: line %d: longer than %zu bytes", path, lineno,
                            sizeof line - 2);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *save = NULL, *name = strtok_r(line, " \t\r\n", &save);
        if (!name) continue; /* blank or comment-only */
        char *tok = strtok_r(NULL, " \t\r\n", &save), *extra = strtok_r(NULL, " \t\r\n", &save);
        int v = tok ? value(tok) : -1;
        if (!tok || v < 0 || extra) {
            st = sp_err_set(err, SP_EFORMAT, "%s: line %d: expected 'module_name %s, got %s%s%s",
                            path, lineno, expect, !tok ? "no value after '" : "'",
                            !tok ? name : v < 0 ? tok : extra,
                            !tok ? "'" : v < 0 ? "'" : "' after the value");
            break;
        }
        for (int i = 0; i < map->n && st == SP_OK; i++)
            if (!strcmp(map->names[i], name))
                st = sp_err_set(err, SP_EFORMAT, "%s: line %d: module '%s' is already given on "
                                "line %d", path, lineno, name, line_of[i]);
        if (st != SP_OK) break;
        if (map->n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(map->names, sizeof(char *) * (size_t)cap);
            if (nn) map->names = nn;
            int *nb = nn ? realloc(map->bits, sizeof(int) * (size_t)cap) : NULL;
            if (nb) map->bits = nb;
            int *nl = nb ? realloc(line_of, sizeof(int) * (size_t)cap) : NULL;
            if (nl) line_of = nl;
            if (!nn || !nb || !nl) {
                st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", path);
                break;
            }
        }
        map->names[map->n] = strdup(name);
        if (!map->names[map->n]) {
            st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", path);
            break;
        }
        line_of[map->n] = lineno;
        map->bits[map->n++] = v;
    }
    if (st == SP_OK && ferror(f))
        st = sp_err_set(err, SP_EIO, "%s: read error: %s", path, strerror(errno));
    fclose(f);
    free(line_of);
    return st;
}

/* bits 1..8 (1: a Q1_0 level, issue 20), the whole word: "3.9" or "3bits" is not a bit width.
 * Whether the container holds that level is checked where the map is used. */
static int bits_value(const char *tok) {
    char *end = NULL;
    errno = 0;
    long b = strtol(tok, &end, 10);
    return !errno && end != tok && *end == '\0' && b >= 1 && b <= 8 ? (int)b : -1;
}

sp_status sp_bits_map_read(const char *path, sp_bits_map *map, sp_err *err) {
    return sp_module_map_read(path, "bits map", bits_value, "bits' with bits in 1..8", map, err);
}

void sp_bits_map_free(sp_bits_map *map) {
    for (int i = 0; i < map->n; i++) free(map->names[i]);
    free(map->names);
    free(map->bits);
    memset(map, 0, sizeof *map);
}
