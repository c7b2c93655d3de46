/* sp_fault.c — see sp_fault.h. */
#include "common/sp_fault.h"

#include <stdlib.h>
#include <string.h>

static const char *const KIND_NAMES[SP_FAULT_KINDS] = {"kill", "alloc"};

/* A non-negative decimal below 2^31, or "*" (SP_FAULT_ANY); [s, e) is the field. */
static int parse_field(const char *s, const char *e, int *out) {
    if (e - s == 1 && *s == '*') {
        *out = SP_FAULT_ANY;
        return 1;
    }
    if (s == e || e - s > 9) return 0;
    int v = 0;
    for (const char *p = s; p < e; p++) {
        if (*p < '0' || *p > '9') return 0;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 1;
}

sp_status sp_fault_parse(const char *spec, sp_fault *out, sp_err *err) {
    memset(out, 0, sizeof *out);
    if (!spec || !*spec) return SP_OK;
    const char *p = spec, *end;
    do { /* one item per comma-separated field; an empty field is an error */
        end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *c1 = memchr(p, ':', (size_t)(end - p));
        const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
        int kind = -1, rank = 0, layer = 0;
        size_t klen = c1 ? (size_t)(c1 - p) : 0;
        for (int k = 0; c1 && k < SP_FAULT_KINDS; k++)
            if (klen == strlen(KIND_NAMES[k]) && !strncmp(p, KIND_NAMES[k], klen)) kind = k;
        SP_RETURN_IF(kind < 0 || !c2 || !parse_field(c1 + 1, c2, &rank) ||
                         !parse_field(c2 + 1, end, &layer),
                     err, SP_EINVAL, "%s=%s: item '%.*s' is not kind:rank:layer (kind kill or "
                     "alloc; rank and layer integers or *)", SP_FAULT_ENV, spec,
                     (int)(end - p > 64 ? 64 : end - p), p);
        SP_RETURN_IF(out->n == SP_FAULT_MAX, err, SP_EINVAL, "%s=%s: more than %d faults",
                     SP_FAULT_ENV, spec, SP_FAULT_MAX);
        out->f[out->n].kind = (sp_fault_kind)kind;
        out->f[out->n].rank = rank;
        out->f[out->n].layer = layer;
        out->n++;
        p = end + 1;
    } while (*end == ',');
    return SP_OK;
}

int sp_fault_hit(const sp_fault *f, sp_fault_kind kind, int rank, int layer) {
    for (int i = 0; f && i < f->n; i++)
        if (f->f[i].kind == kind && (f->f[i].rank == SP_FAULT_ANY || f->f[i].rank == rank) &&
            (f->f[i].layer == SP_FAULT_ANY || f->f[i].layer == layer))
            return 1;
    return 0;
}
