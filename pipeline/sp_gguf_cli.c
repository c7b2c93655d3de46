/* sp_gguf_cli.c — `shardpress export --format gguf` (see sp_gguf_cli.h). */
#include "pipeline/sp_gguf_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sp_gtype.h"
#include "mpi/sp_mpi.h"
#include "pipeline/quantize/sp_qrun.h"
#include "pipeline/sp_opts.h"
#include "pipeline/search/sp_search_gguf.h"
#include "shards/formats/sp_gguf_read.h"
#include "shards/formats/sp_gguf_export.h"

/* The two %s are the type lists, from the sp_gtype table (sp_gtype_names). */
static const char *USAGE =
    "usage: shardpress export --model DIR --format gguf --out FILE.gguf [--type T]\n"
    "                         [--embed-type T] [--output-type T] [--type-map FILE]\n"
    "                         [--bits-map FILE] [--match-gguf F.gguf] [--dense-from DIR]\n"
    "                         [--force]\n"
    "\n"
    "Write a model (dense, or the output of quantize) as one GGUF v3 file for llama.cpp:\n"
    "llama/qwen2 metadata, the tokenizer, llama.cpp's tensor names and q/k row order.\n"
    "Container levels that are a GGUF type exactly (quantize --format gguf:TYPE or GGUF\n"
    "--levels; symmetric group-32 levels of 4/5/8 bits are Q4_0/Q5_0/Q8_0) keep GPTQ's codes\n"
    "and scales; other levels are re-quantized to the K-quant (or legacy type) of their bits.\n"
    "Types: %s.\n"
    "Quantized types (quantize --format gguf:TYPE, --levels): %s.\n"
    "\n"
    "  --model DIR         model directory, llama2.c .bin, or quantized container directory\n"
    "  --out FILE          the .gguf file (must not exist, unless --force)\n"
    "  --type T            type of every linear weight (default: auto; dense models F32)\n"
    "  --embed-type T      token_embd (default: the linear type for F32/F16, else Q8_0)\n"
    "  --output-type T     untied output head (default: F32/F16 as linear, else Q6_K)\n"
    "  --type-map FILE     'module_name TYPE' per line, overriding --type per module\n"
    "  --bits-map FILE     'module_name bits' per line: container levels to export\n"
    "  --match-gguf F      token_embd and output at the types of F (a llama.cpp GGUF of the\n"
    "                      same model, e.g. its Q4_K_M) unless --embed-type/--output-type\n"
    "                      say otherwise; with a map from 'search --match-gguf F' the file is\n"
    "                      no bigger than F (levels whose rows fit no block: F16, as there)\n"
    "  --dense-from DIR    the model the container was quantized from (checked against its\n"
    "                      source.json CRCs): modules whose level fits no GGUF block, written\n"
    "                      as F16/F32 anyway, take the original weights instead of GPTQ's\n"
    "  --force             replace an existing --out\n";

/* Room for every type name of the sp_gtype table with its separator. */
#define TYPE_LIST_CAP 256

int sp_gguf_cli_wants(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--format=gguf")) return 1;
        if (!strcmp(argv[i], "--format") && i + 1 < argc && !strcmp(argv[i + 1], "gguf"))
            return 1;
    }
    return 0;
}

sp_status sp_type_map_read(const char *path, sp_bits_map *map, sp_err *err) {
    char all[TYPE_LIST_CAP], expect[TYPE_LIST_CAP + 64];
    sp_gtype_names(all, sizeof all, ", ", 0);
    snprintf(expect, sizeof expect, "TYPE' with TYPE one of %s", all);
    return sp_module_map_read(path, "type map", sp_gtype_parse, expect, map, err);
}

static sp_status type_level(const char *opt, const char *name, int *type, sp_err *err) {
    int t = sp_gtype_parse(name), bits = 0;
    sp_gtype_level(t, &bits, NULL, NULL);
    char q[TYPE_LIST_CAP];
    sp_gtype_names(q, sizeof q, ", ", 1);
    SP_RETURN_IF(t < 0 || bits == 0, err, SP_EINVAL, "%s: '%s' is not a quantized GGUF type "
                 "(%s)", opt, name, q);
    *type = t;
    return SP_OK;
}

sp_status sp_gguf_cli_format(const char *val, int *type, sp_err *err) {
    SP_RETURN_IF(strncmp(val, "gguf:", 5) != 0, err, SP_EINVAL,
                 "--format: '%s' is not gguf:TYPE (e.g. gguf:Q4_K)", val);
    return type_level("--format", val + 5, type, err);
}

/* One plain level, "B" or "BgG": B bits (2..8) with --group-size, or with its own group of G
 * columns (G >= 1, or -1 for one group per row), as in the usual "w4g128" notation. */
static sp_status plain_level(const char *tok, int *bits, int *group, sp_err *err) {
    char b[16];
    const char *g = strchr(tok, 'g');
    size_t nb = g ? (size_t)(g - tok) : strlen(tok);
    SP_RETURN_IF(nb == 0 || nb >= sizeof b, err, SP_EINVAL,
                 "--levels: '%s' is not BITS or BITSgGROUP (e.g. 3 or 4g128)", tok);
    memcpy(b, tok, nb);
    b[nb] = 0;
    long v = 0;
    SP_FORWARD(sp_cli_int("--levels", b, 2, 8, &v, err));
    *bits = (int)v;
    *group = 0;
    if (!g) return SP_OK;
    SP_RETURN_IF(sp_cli_int("--levels", g + 1, -1, 1 << 20, &v, err) != SP_OK || v == 0, err,
                 SP_EINVAL, "--levels: '%s': the group size after 'g' must be >= 1, or -1 for "
                 "one group per row", tok);
    *group = (int)v;
    return SP_OK;
}

sp_status sp_gguf_cli_levels(const char *val, int *levels, int max, int *n, int *types,
                             int *groups, int *is_types, sp_err *err) {
    SP_RETURN_IF(!val || !*val, err, SP_EINVAL, "--levels: missing value");
    *is_types = (val[0] == 'q' || val[0] == 'Q');
    char buf[256];
    SP_RETURN_IF(strlen(val) >= sizeof buf, err, SP_EINVAL, "--levels: list too long");
    snprintf(buf, sizeof buf, "%s", val);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        SP_RETURN_IF(*n >= max, err, SP_EINVAL, "--levels: more than %d levels", max);
        types[*n] = 0;
        groups[*n] = 0;
        if (*is_types) {
            SP_FORWARD(type_level("--levels", tok, &types[*n], err));
            sp_gtype_level(types[*n], &levels[*n], NULL, NULL);
        } else {
            SP_FORWARD(plain_level(tok, &levels[*n], &groups[*n], err));
        }
        (*n)++;
    }
    SP_RETURN_IF(*n == 0, err, SP_EINVAL, "--levels: empty list");
    return SP_OK;
}

static sp_status type_fn(const char *opt, const char *v, void *dst, sp_err *err) {
    int *t = dst;
    *t = sp_gtype_parse(v);
    char all[TYPE_LIST_CAP];
    sp_gtype_names(all, sizeof all, ", ", 0);
    SP_RETURN_IF(*t < 0, err, SP_EINVAL, "export: %s '%s' is not a GGUF type (%s)", opt, v, all);
    return SP_OK;
}

/* The type to write for a side tensor the matched file holds as ggml type t: t itself when
 * export writes it, else (IQ4_NL, IQ4_XS, ...) the writable type of most bits per weight that
 * is no larger per weight and fits rows of cols, with a warning. */
static int side_type(int t, int cols, const char *path, const char *what, int rank) {
    if (sp_gtype_name(t) && sp_gtype_row_bytes(t, cols)) return t;
    int blk;
    size_t bb;
    const char *nm;
    sp_gguf_type_traits(t, &blk, &bb, &nm);
    double bpw = 8.0 * (double)bb / blk;
    static const int cand[] = {SP_GT_Q2_K, SP_GT_Q3_K, SP_GT_Q4_0, SP_GT_Q4_1, SP_GT_Q4_K,
                               SP_GT_Q5_0, SP_GT_Q5_1, SP_GT_Q5_K, SP_GT_Q6_K, SP_GT_Q8_0, SP_GT_F16};
    int best = SP_GT_Q2_K;
    for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++)
        if (sp_gtype_row_bytes(cand[i], cols) && sp_gtype_bpw(cand[i]) <= bpw + 1e-9 &&
            (!sp_gtype_row_bytes(best, cols) || sp_gtype_bpw(cand[i]) > sp_gtype_bpw(best)))
            best = cand[i];
    if (rank == 0) fprintf(stderr, "warning: %s: %s is %s, which export does not write: %s instead\n", path, what,
            nm, sp_gtype_name(best));
    return best;
}

/* --match-gguf: token_embd and output at the file's types (where not given). */
static sp_status match_sides(int rank, const char *model, const char *path,
                             sp_gguf_export_opts *eo, sp_err *err) {
    char cp[4200];
    snprintf(cp, sizeof cp, "%s/config.json", model);
    sp_config cfg;
    SP_FORWARD(sp_config_load_json(&cfg, cp, err));
    sp_gguf_match m;
    SP_FORWARD(sp_gguf_match_read(path, &cfg, &m, err));
    eo->f16_fallback = 1; /* as search --match-gguf prices such levels, and llama.cpp writes */
    eo->side_search = 1;  /* the sides at their best for the type: the file competes with F   */
    if (eo->embed_type < 0) eo->embed_type = side_type(m.embed_type, cfg.dim, path, "token_embd", rank);
    if (eo->output_type < 0 && m.output_type >= 0)
        eo->output_type = side_type(m.output_type, cfg.dim, path, "output", rank);
    return SP_OK;
}

sp_status sp_gguf_export_cli(MPI_Comm comm, int rank, int argc, char **argv,
                             const volatile sig_atomic_t *stop_flag, sp_err *err) {
    const char *model = NULL, *out = NULL, *bits_map = NULL, *type_map = NULL, *match = NULL,
               *dense_from = NULL;
    sp_gguf_export_opts eo;
    sp_gguf_export_opts_default(&eo);
    const char *format = NULL;
    int help = 0;
    const sp_opt t[] = {
        SP_OPT_S("model", &model),              SP_OPT_S("out", &out),
        SP_OPT_S("format", &format),            SP_OPT_X("type", &eo.type, type_fn),
        SP_OPT_X("embed-type", &eo.embed_type, type_fn),
        SP_OPT_X("output-type", &eo.output_type, type_fn),
        SP_OPT_S("type-map", &type_map),        SP_OPT_S("bits-map", &bits_map),
        SP_OPT_F("force", &eo.force, 1),        SP_OPT_S("match-gguf", &match),
        SP_OPT_S("dense-from", &dense_from),
    };
    sp_status st = sp_opts_parse("export --format gguf", t, (int)(sizeof t / sizeof t[0]), argc,
                                 argv, &help, NULL, 0, NULL, err);
    SP_FORWARD(st);
    if (help) {
        if (rank == 0) {
            char all[TYPE_LIST_CAP], q[TYPE_LIST_CAP];
            sp_gtype_names(all, sizeof all, " ", 0);
            sp_gtype_names(q, sizeof q, " ", 1);
            printf(USAGE, all, q);
        }
        return SP_OK;
    }
    SP_RETURN_IF(!model || !out, err, SP_EINVAL, "export: --model and --out are required");
    if (match) SP_FORWARD(match_sides(rank, model, match, &eo, err));
    sp_bits_map bm, tm;
    memset(&bm, 0, sizeof bm);
    memset(&tm, 0, sizeof tm);
    if (bits_map) st = sp_bits_map_read(bits_map, &bm, err);
    if (st == SP_OK && type_map) st = sp_type_map_read(type_map, &tm, err);
    eo.n_overrides = bm.n;
    eo.override_modules = (const char *const *)bm.names;
    eo.override_bits = bm.bits;
    eo.n_types = tm.n;
    eo.type_modules = (const char *const *)tm.names;
    eo.type_types = tm.bits;
    eo.stop_flag = stop_flag;
    /* --dense-from: every rank opens the model and checks a share of its tensors against the
     * container's source.json CRCs (sp_qrun_verify_source), so a different model is refused */
    sp_model *dm = NULL;
    if (dense_from) {
        if (st == SP_OK) st = sp_model_open(&dm, dense_from, err);
        st = sp_mpi_agree(comm, st, err);
        if (st == SP_OK) st = sp_qrun_verify_source(comm, dm, dense_from, model, err);
        eo.dense = dm;
    }
    /* a single writer: rank 0 exports, the others wait for its verdict */
    if (st == SP_OK && rank == 0) st = sp_export_gguf(model, out, &eo, err);
    if (dm) sp_model_close(dm);
    sp_bits_map_free(&bm);
    sp_bits_map_free(&tm);
    st = sp_mpi_agree(comm, st, err);
    if (st == SP_OK && rank == 0) printf("exported     %s -> %s (gguf)\n", model, out);
    return st;
}
