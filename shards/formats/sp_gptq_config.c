/* sp_gptq_config.c — the GPTQ quantization config (quantize_config.json, or config.json
 * "quantization_config"): built by the exporter, parsed by the reader.
 *
 *   {"bits": 4, "group_size": 128, "desc_act": false, "sym": true, "static_groups": true,
 *    "checkpoint_format": "gptq", "quant_method": "gptq",
 *    "dynamic": {"+:^model\\.layers\\.0\\.mlp\\.down_proj$": {"bits": 8}, "-:regex": {}}}
 *
 * "dynamic" is GPTQModel's per-module override map: keys are Python regexes matched with
 * re.match (anchored at the start of the module name); "+:" or no prefix overrides the fields
 * given, "-:" leaves matching modules unquantized. The first matching key wins.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shards/formats/sp_gptq_int.h"

struct sp_gptq_rule {
    pcre2_code *re;
    int negative;
    int bits;       /* 0: inherit */
    int group_size; /* 0: inherit */
};

/* ---- building (export) ---------------------------------------------------------------------- */

/* "^" + name with regex metacharacters escaped + "$". */
static void regex_for(char *buf, size_t cap, const char *name) {
    size_t k = 0;
    buf[k++] = '+';
    buf[k++] = ':';
    buf[k++] = '^';
    for (const char *p = name; *p && k + 4 < cap; p++) {
        if (strchr(".^$*+?()[]{}|\\", *p)) buf[k++] = '\\';
        buf[k++] = *p;
    }
    buf[k++] = '$';
    buf[k] = '\0';
}

sp_status sp_gptq_build_config(const sp_qcontainer *c, const int *bits, int v2, cJSON **out,
                               sp_err *err) {
    const sp_qcontainer_meta *m = sp_qcontainer_get_meta(c);
    cJSON *q = cJSON_CreateObject(), *dyn = cJSON_CreateObject();
    int padded = 0, ok = q && dyn;
    ok = ok && cJSON_AddNumberToObject(q, "bits", m->default_bits);
    ok = ok && cJSON_AddNumberToObject(q, "group_size", m->group_size > 0 ? m->group_size : -1);
    ok = ok && cJSON_AddBoolToObject(q, "desc_act", 0);
    ok = ok && cJSON_AddBoolToObject(q, "sym", m->sym);
    ok = ok && cJSON_AddBoolToObject(q, "static_groups", 1);
    ok = ok && cJSON_AddStringToObject(q, "checkpoint_format", v2 ? "gptq_v2" : "gptq");
    ok = ok && cJSON_AddStringToObject(q, "quant_method", "gptq");
    for (int i = 0; ok && i < sp_qcontainer_n_modules(c); i++) {
        const char *name = sp_qcontainer_module_name(c, i);
        sp_qlevel_info lv;
        sp_status st = sp_qcontainer_level_info(c, name, bits[i], &lv, err);
        if (st != SP_OK) {
            cJSON_Delete(q);
            cJSON_Delete(dyn);
            return st;
        }
        padded |= (lv.cols * lv.bits) % 32 != 0 || (lv.rows * lv.bits) % 32 != 0;
        /* Two group sizes are the same grouping when equal or both cover the whole row. */
        int gs_def = m->group_size > 0 ? m->group_size : lv.cols;
        int same_gs = lv.group_size == gs_def || (lv.group_size >= lv.cols && gs_def >= lv.cols);
        if (lv.bits == m->default_bits && same_gs && lv.sym == m->sym) continue;
        char key[600];
        regex_for(key, sizeof key, name);
        cJSON *o = cJSON_AddObjectToObject(dyn, key);
        ok = o && cJSON_AddNumberToObject(o, "bits", lv.bits);
        if (ok && !same_gs)
            ok = cJSON_AddNumberToObject(o, "group_size",
                                         lv.group_size >= lv.cols ? -1 : lv.group_size) != NULL;
        if (ok && lv.sym != m->sym) ok = cJSON_AddBoolToObject(o, "sym", lv.sym) != NULL;
    }
    if (ok && cJSON_GetArraySize(dyn) > 0) {
        ok = cJSON_AddItemToObject(q, "dynamic", dyn);
        if (ok) dyn = NULL;
    }
    if (ok && padded) {
        ok = cJSON_AddBoolToObject(q, "shardpress_padded", 1) &&
             cJSON_AddStringToObject(q, "shardpress_note",
                                     "some modules have in*bits or out*bits not a multiple of 32: "
                                     "qweight has ceil(in*bits/32) rows and qzeros "
                                     "ceil(out*bits/32) columns, the last word padded with zero "
                                     "codes");
    }
    /* which shardpress method chose the codes (informational; loaders ignore it) */
    ok = ok && cJSON_AddStringToObject(q, "shardpress_method", m->method);
    cJSON_Delete(dyn);
    if (!ok) {
        cJSON_Delete(q);
        return sp_err_set(err, SP_ENOMEM, "export: out of memory building quantize_config");
    }
    *out = q;
    return SP_OK;
}

/* ---- parsing (reader) ----------------------------------------------------------------------- */

/* An integer member; absent gives def. */
static sp_status get_int(const cJSON *o, const char *key, int def, int *v, const char *what,
                         sp_err *err) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!x) {
        *v = def;
        return SP_OK;
    }
    SP_RETURN_IF(!cJSON_IsNumber(x) || x->valuedouble != (double)(int)x->valuedouble, err,
                 SP_EFORMAT, "%s: field %s must be an integer", what, key);
    *v = (int)x->valuedouble;
    return SP_OK;
}

static sp_status get_bool(const cJSON *o, const char *key, int def, int *v, const char *what,
                          sp_err *err) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!x) {
        *v = def;
        return SP_OK;
    }
    SP_RETURN_IF(!cJSON_IsBool(x), err, SP_EFORMAT, "%s: field %s must be true or false", what,
                 key);
    *v = cJSON_IsTrue(x);
    return SP_OK;
}

static sp_status check_bits_gs(int bits, int gs, const char *what, const char *field,
                               sp_err *err) {
    SP_RETURN_IF(bits < 2 || bits > 8, err, SP_EUNSUPPORTED,
                 "%s: %sbits=%d is outside 2..8", what, field, bits);
    SP_RETURN_IF(gs == 0 || gs < -1, err, SP_EFORMAT, "%s: %sgroup_size=%d must be -1 or positive",
                 what, field, gs);
    return SP_OK;
}

static sp_status parse_rules(const cJSON *dyn, const char *what, sp_gptq_qconfig *q,
                             sp_err *err) {
    SP_RETURN_IF(!cJSON_IsObject(dyn), err, SP_EFORMAT, "%s: field dynamic must be an object",
                 what);
    int n = cJSON_GetArraySize(dyn);
    q->rules = sp_calloc((size_t)n, sizeof *q->rules, err, "dynamic rules");
    if (!q->rules) return SP_ENOMEM;
    const cJSON *it;
    cJSON_ArrayForEach(it, dyn) {
        sp_gptq_rule *r = &q->rules[q->n_rules];
        const char *key = it->string, *pat = key;
        char field[600];
        snprintf(field, sizeof field, "dynamic[\"%.500s\"].", key);
        SP_RETURN_IF(!cJSON_IsObject(it), err, SP_EFORMAT, "%s: %s must be an object", what,
                     field);
        if (!strncmp(key, "+:", 2) || !strncmp(key, "-:", 2)) {
            r->negative = key[0] == '-';
            pat = key + 2;
        }
        int code;
        PCRE2_SIZE off;
        r->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED | PCRE2_UTF,
                              &code, &off, NULL);
        if (!r->re) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(code, msg, sizeof msg);
            return sp_err_set(err, SP_EFORMAT, "%s: %s key: bad regex at offset %zu: %s", what,
                              field, (size_t)off, (const char *)msg);
        }
        q->n_rules++;
        SP_FORWARD(get_int(it, "bits", 0, &r->bits, what, err));
        SP_FORWARD(get_int(it, "group_size", 0, &r->group_size, what, err));
        if (!r->negative)
            SP_FORWARD(check_bits_gs(r->bits ? r->bits : q->bits,
                                     r->group_size ? r->group_size : q->group_size, what, field,
                                     err));
    }
    return SP_OK;
}

sp_status sp_gptq_parse_config(const cJSON *o, const char *what, sp_gptq_qconfig *q,
                               sp_err *err) {
    memset(q, 0, sizeof *q);
    SP_RETURN_IF(!cJSON_IsObject(o), err, SP_EFORMAT, "%s: not a JSON object", what);
    const cJSON *qm = cJSON_GetObjectItemCaseSensitive(o, "quant_method");
    SP_RETURN_IF(qm && (!cJSON_IsString(qm) || strcmp(qm->valuestring, "gptq") != 0), err,
                 SP_EUNSUPPORTED, "%s: quant_method %s%s%s is not supported (only gptq)", what,
                 cJSON_IsString(qm) ? "\"" : "", cJSON_IsString(qm) ? qm->valuestring : "(not a string)",
                 cJSON_IsString(qm) ? "\"" : "");
    const cJSON *bits = cJSON_GetObjectItemCaseSensitive(o, "bits");
    SP_RETURN_IF(!bits, err, SP_EFORMAT, "%s: field bits is missing", what);
    SP_FORWARD(get_int(o, "bits", 0, &q->bits, what, err));
    SP_FORWARD(get_int(o, "group_size", -1, &q->group_size, what, err));
    SP_FORWARD(check_bits_gs(q->bits, q->group_size, what, "", err));
    SP_FORWARD(get_bool(o, "desc_act", 0, &q->desc_act, what, err));
    SP_FORWARD(get_bool(o, "sym", 1, &q->sym, what, err));
    const cJSON *cf = cJSON_GetObjectItemCaseSensitive(o, "checkpoint_format");
    if (cf) {
        SP_RETURN_IF(!cJSON_IsString(cf), err, SP_EFORMAT,
                     "%s: field checkpoint_format must be a string", what);
        SP_RETURN_IF(strcmp(cf->valuestring, "gptq") && strcmp(cf->valuestring, "gptq_v2"), err,
                     SP_EUNSUPPORTED, "%s: checkpoint_format \"%s\" is not supported (gptq, "
                     "gptq_v2)", what, cf->valuestring);
        q->v2 = strcmp(cf->valuestring, "gptq_v2") == 0;
    }
    const cJSON *dyn = cJSON_GetObjectItemCaseSensitive(o, "dynamic");
    if (dyn && !cJSON_IsNull(dyn)) {
        sp_status st = parse_rules(dyn, what, q, err);
        if (st != SP_OK) {
            sp_gptq_qconfig_free(q);
            return st;
        }
    }
    return SP_OK;
}

void sp_gptq_qconfig_free(sp_gptq_qconfig *q) {
    for (int i = 0; i < q->n_rules; i++) pcre2_code_free(q->rules[i].re);
    free(q->rules);
    memset(q, 0, sizeof *q);
}

sp_status sp_gptq_module_rule(const sp_gptq_qconfig *q, const char *module, int *bits,
                              int *group_size, int *quantized, sp_err *err) {
    *bits = q->bits;
    *group_size = q->group_size;
    *quantized = 1;
    for (int i = 0; i < q->n_rules; i++) {
        const sp_gptq_rule *r = &q->rules[i];
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->re, NULL);
        SP_RETURN_IF(!md, err, SP_ENOMEM, "out of memory matching dynamic rules for %s", module);
        int rc = pcre2_match(r->re, (PCRE2_SPTR)module, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL);
        pcre2_match_data_free(md);
        if (rc == PCRE2_ERROR_NOMATCH) continue;
        SP_RETURN_IF(rc < 0, err, SP_EFORMAT, "dynamic rule %d: regex match failed (%d) on %s", i,
                     rc, module);
        if (r->negative) {
            *quantized = 0;
        } else {
            if (r->bits) *bits = r->bits;
            if (r->group_size) *group_size = r->group_size;
        }
        return SP_OK;
    }
    return SP_OK;
}
