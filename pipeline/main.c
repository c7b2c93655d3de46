/* main.c — the shardpress command line. The only place that touches MPI_COMM_WORLD, prints
 * errors, and decides the exit code. Every subcommand is collective: all ranks parse the same
 * argv, run the same job, and agree on its status, so one failing rank ends them all with
 * one line on stderr (printed by rank 0) and exit code 1.
 */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <signal.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/sp_error.h"
#include "kernels/sp_blas.h"
#include "kernels/sp_gtype.h"
#include "kernels/sp_quant.h"
#include "kernels/sp_rotate.h"
#include "mpi/sp_mpi.h"
#include "pipeline/sp_cli.h"
#include "pipeline/sp_device.h"
#include "pipeline/sp_model_cli.h"
#include "pipeline/sp_opts.h"
#include "pipeline/plan/sp_plan.h"
#include "pipeline/quantize/sp_quantize.h"
#include "pipeline/search/sp_search_cli.h"
#include "pipeline/exchange/sp_exchange.h"
#include "shards/formats/sp_gptq_export.h"
#include "pipeline/sp_gguf_cli.h"

#define SP_VERSION "0.1.0"

/* Exit code of a run stopped by SIGUSR1/SIGTERM after writing a checkpoint: the Slurm
 * templates requeue the job when they see it. */
#define SP_EXIT_PREEMPTED 3

/* The number of the signal that asked to stop (SIGUSR1, SIGTERM, SIGINT), 0 until then. Every
 * command hands it to its job, which looks at it between units of work and stops there with
 * nothing half-written (common/sp_stop.h); quantize and search checkpoint first. */
static volatile sig_atomic_t g_stop_requested = 0;

static void on_stop_signal(int sig) { g_stop_requested = sig; }

/* Make a path absolute (run.json must work from any directory). Returns a malloc'ed string. */
static char *absolute_path(const char *p) {
    if (!p) return NULL;
    if (p[0] == '/') return strdup(p);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return strdup(p);
    size_t n = strlen(cwd) + strlen(p) + 2;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%s/%s", cwd, p);
    return out;
}

typedef struct {
    MPI_Comm comm;
    int rank, size;
} cli_ctx;


/* ---- quantize --------------------------------------------------------------------------- */

static const char *QUANTIZE_USAGE =
    "usage: mpirun -n N shardpress quantize --model DIR --calib FILE --out DIR [options]\n"
    "\n"
    "Quantize every linear layer of a model with GPTQ (or RTN), one decoder block at a time,\n"
    "with the calibration windows split across MPI ranks. The output directory holds\n"
    "config.json, the tokenizer and model.sp.h5 (every level of --levels).\n"
    "\n"
    "  --model DIR         dense model (HF safetensors or llama2.c .bin)\n"
    "  --calib FILE        calibration text (UTF-8); not needed with --method rtn\n"
    "  --out DIR           output model directory (must not exist, unless --force)\n"
    "  --bits B            bits used to propagate activations and by default (4)\n"
    "  --levels L,L,...    bit levels stored (default: just --bits), e.g. 2,3,4,5,6,8, or GGUF\n"
    "                      types, one per bit width, e.g. Q2_K,Q3_K,Q4_K,Q6_K (see --format);\n"
    "                      BgG gives a level its own group size: 2,3,4g128,8g128 (search then\n"
    "                      weighs each level's quality against its stored bits)\n"
    "  --group-size G      columns per quantization group (128; -1: one group per row)\n"
    "  --sym | --asym      symmetric or asymmetric (default) quantization grid\n"
    "  --act-order | --no-act-order  quantize columns in order of decreasing Hessian\n"
    "                      diagonal (static groups, so g_idx stays c / group_size) (%s)\n"
    "  --damp D            dampening, fraction of mean(diag H) (0.01)\n"
    "  --block B           GPTQ column block for lazy batch updates (128)\n"
    "  --scale-search S    how each group's scale/zero is chosen: minmax (the group's range),\n"
    "                      mse (shrink grid, least sum |w - q|^2.4, as the reference's --mse)\n"
    "                      or hmse (shrink grid, least sum diag(H)_j (w_j - q_j)^2) (%s)\n"
    "  --mse               the same as --scale-search mse\n"
    "  --true-sequential   quantize q/k/v, then o, gate/up and down, each from the inputs\n"
    "                      of the block with the earlier layers quantized (%s)\n"
    "  --no-true-sequential  all four Hessians of a block from one dense forward pass\n"
    "  --nsamples N        calibration windows (128)\n"
    "  --ctx T             tokens per calibration window (default: min(2048,\n"
    "                      max_position_embeddings); a larger value is an error)\n"
    "  --method M          gptq (default) or rtn\n"
    "  --seed S            seed of the calibration window sampler (0)\n"
    "  --force             replace an existing --out\n"
    "  --checkpoint-dir D  write lazy asynchronous checkpoints (parallel HDF5) into D;\n"
    "                      SIGUSR1/SIGTERM then checkpoint at the next block and exit 3,\n"
    "                      and 'shardpress resume D' continues on any number of ranks\n"
    "  --checkpoint-every B  checkpoint after every B blocks (1)\n"
    "  --checkpoint-compress none|gzip|zstd  chunked compression of checkpoints (none)\n"
    SP_DEVICE_USAGE
    "  --json              print one JSON object with the run's figures\n"
    "  --format gguf:TYPE  GPTQ in a GGUF type's own block format, so that export --format\n"
    "                      gguf copies GPTQ's values: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 (32 columns)\n"
    "                      or Q2_K Q3_K Q4_K Q5_K Q6_K (256: columns must be a multiple);\n"
    "                      --levels may list such types, one per bit width (Q3_K,Q4_K,Q6_K)\n"
    "  --imatrix-out FILE  also write llama.cpp's importance matrix (GGUF) from the Hessians\n"
    "  --rotate R          none (default), hadamard or orthogonal: fold the RMSNorm weights\n"
    "                      into the linears and rotate the residual stream (and v/o per head)\n"
    "                      by a seeded orthogonal matrix before GPTQ; the output, its exports\n"
    "                      and eval are the rotated model (same function, explicit lm_head)\n"
    "  --rotate-seed S     seed of the rotation (0)\n";

/* What a quantize job did, as quantize --json and resume --json both report it. */
static void add_run_summary(cJSON *j, const sp_quantize_result *r) {
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    cJSON_AddNumberToObject(j, "peak_rss_mb_max", r->peak_rss_mb_max);
    cJSON *arr = cJSON_AddArrayToObject(j, "peak_rss_mb");
    for (int i = 0; i < r->ranks && r->peak_rss_mb; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(r->peak_rss_mb[i]));
    cJSON_AddNumberToObject(j, "ranks", r->ranks);
    cJSON_AddNumberToObject(j, "modules", r->modules);
    cJSON_AddNumberToObject(j, "mean_rel_layer_error", r->mean_rel_error);
    cJSON_AddNumberToObject(j, "start_layer", r->start_layer);
    cJSON_AddNumberToObject(j, "checkpoints", r->checkpoints);
    cJSON_AddNumberToObject(j, "checkpoint_blocked_s", r->ckpt_blocked_s);
    cJSON_AddNumberToObject(j, "checkpoint_write_s", r->ckpt_write_s);
    cJSON *ph = cJSON_AddObjectToObject(j, "phase_seconds");
    cJSON_AddNumberToObject(ph, "calibration", r->t_calib);
    cJSON_AddNumberToObject(ph, "hessian", r->t_hessian);
    cJSON_AddNumberToObject(ph, "gptq", r->t_gptq);
    cJSON_AddNumberToObject(ph, "share", r->t_share);
    cJSON_AddNumberToObject(ph, "propagate", r->t_propagate);
    cJSON_AddNumberToObject(ph, "write", r->t_write);
    /* Only a rotated run has this phase; plan predicts the phases of an unrotated one and
     * plan_cli compares the two sets of names. */
    if (r->t_rotate > 0) cJSON_AddNumberToObject(ph, "rotate", r->t_rotate);
}

static void print_quantize_result(cli_ctx *cx, const sp_quantize_opts *op, sp_quantize_result *rp,
                                  sp_status st, int json);

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* Option-table helpers (pipeline/sp_opts.h) for quantize's values that are names or lists. */
static sp_status rotate_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    int r = sp_rotate_parse(val);
    SP_RETURN_IF(r < 0, err, SP_EINVAL, "%s: '%s' is not none, hadamard or orthogonal", opt, val);
    *(int *)dst = r;
    return SP_OK;
}

static sp_status compress_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    static const char *names[] = {"none", "gzip", "zstd"}; /* sp_ckpt_compress order */
    for (int i = 0; i < 3; i++)
        if (!strcmp(val, names[i])) {
            *(int *)dst = i;
            return SP_OK;
        }
    return sp_err_set(err, SP_EINVAL, "%s: '%s' is not none, gzip or zstd", opt, val);
}

static sp_status group_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    long v = 0;
    SP_FORWARD(sp_cli_int(opt, val, -1, 1 << 30, &v, err));
    SP_RETURN_IF(v == 0, err, SP_EINVAL, "%s: must be >= 1, or -1 for one group per row", opt);
    *(int *)dst = (int)v;
    return SP_OK;
}

static sp_status scale_search_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    int ss = sp_quant_search_parse(val);
    SP_RETURN_IF(ss < 0, err, SP_EINVAL, "%s: '%s' is not minmax, mse, hmse or gguf", opt, val);
    *(int *)dst = ss;
    return SP_OK;
}

static sp_status method_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    if (!strcmp(val, "gptq")) *(int *)dst = 0;
    else if (!strcmp(val, "rtn")) *(int *)dst = 1;
    else return sp_err_set(err, SP_EINVAL, "%s: '%s' is not gptq or rtn", opt, val);
    return SP_OK;
}

static sp_status format_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    (void)opt;
    return sp_gguf_cli_format(val, dst, err);
}

static sp_status device_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    (void)opt;
    return sp_device_arg(val, dst, err);
}

/* --levels: plain bit widths or GGUF types (issue 11); given is set when the option appears. */
typedef struct {
    sp_quantize_opts *o;
    int *types, *groups, is_types, given;
} levels_arg;

static sp_status levels_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    (void)opt;
    levels_arg *l = dst;
    l->given = 1;
    return sp_gguf_cli_levels(val, l->o->levels, SP_QUANTIZE_MAX_LEVELS, &l->o->n_levels,
                              l->types, l->groups, &l->is_types, err);
}

static sp_status cmd_quantize(cli_ctx *cx, int argc, char **argv, sp_err *err) {
    sp_quantize_opts o;
    sp_quantize_defaults(&o);
    int json = 0, help = 0;
    /* issue 11: GGUF types as levels; type_of[b] is the type of the b-bit level (0: plain) */
    int gguf_type = 0, ltypes[SP_QUANTIZE_MAX_LEVELS] = {0}, type_of[9] = {0};
    /* "4g128": a level's own group size; group_of[b] is the b-bit level's (0: --group-size) */
    int lgroups[SP_QUANTIZE_MAX_LEVELS] = {0}, group_of[9] = {0};
    /* values whose presence matters (0 / -1: not given) */
    int bits = 0, group = 0, sym = -1, search = -1;
    long seed = -1, rotate_seed = -1;
    double damp = 0;
    levels_arg lv = {&o, ltypes, lgroups, 0, 0};
    const sp_opt t[] = {
        SP_OPT_S("model", &o.model_dir),         SP_OPT_S("calib", &o.calib_path),
        SP_OPT_S("out", &o.out_dir),             SP_OPT_I("bits", &bits, 2, 8),
        SP_OPT_X("levels", &lv, levels_fn),      SP_OPT_X("group-size", &group, group_fn),
        SP_OPT_F("sym", &sym, 1),                SP_OPT_F("asym", &sym, 0),
        SP_OPT_F("act-order", &o.act_order, 1),  SP_OPT_F("no-act-order", &o.act_order, 0),
        SP_OPT_D("damp", &damp, 1e-12, 0.999),   SP_OPT_I("block", &o.block, 1, 1 << 20),
        SP_OPT_F("mse", &search, SP_QSEARCH_MSE),
        SP_OPT_X("scale-search", &search, scale_search_fn),
        SP_OPT_F("true-sequential", &o.true_sequential, 1),
        SP_OPT_F("no-true-sequential", &o.true_sequential, 0),
        SP_OPT_I("nsamples", &o.nsamples, 1, 1 << 24), SP_OPT_I("ctx", &o.ctx, 2, 1 << 24),
        SP_OPT_X("method", &o.rtn, method_fn),   SP_OPT_L("seed", &seed, 0, 0x7fffffffffffffffL),
        SP_OPT_F("force", &o.force, 1),          SP_OPT_F("json", &json, 1),
        SP_OPT_S("checkpoint-dir", &o.checkpoint_dir),
        SP_OPT_I("checkpoint-every", &o.checkpoint_every, 1, 1 << 20),
        SP_OPT_X("checkpoint-compress", &o.checkpoint_compress, compress_fn),
        SP_OPT_X("device", &o.device, device_fn),
        SP_OPT_X("format", &gguf_type, format_fn), SP_OPT_S("imatrix-out", &o.imatrix_out),
        SP_OPT_X("rotate", &o.rotate, rotate_fn),
        SP_OPT_L("rotate-seed", &rotate_seed, 0, 0x7fffffffffffffffL),
    };
    SP_FORWARD(sp_opts_parse("quantize", t, (int)(sizeof t / sizeof t[0]), argc, argv, &help,
                             NULL, 0, NULL, err));
    if (help) {
        if (cx->rank == 0) {
            sp_quantize_opts dflt;
            sp_quantize_defaults(&dflt);
            printf(QUANTIZE_USAGE, dflt.act_order ? "default" : "off by default",
                   sp_quant_search_name(dflt.scale_search),
                   dflt.true_sequential ? "default" : "off by default");
        }
        return SP_OK;
    }
    const int have_bits = bits != 0, have_group = group != 0, have_asym = sym == 0;
    const int have_search = search >= 0, have_levels = lv.given, gguf_levels = lv.is_types;
    if (have_bits) o.bits = bits;
    if (have_group) o.group_size = group;
    if (sym >= 0) o.sym = sym;
    if (have_search) o.scale_search = search;
    if (seed >= 0) o.seed = (uint64_t)seed;
    if (rotate_seed >= 0) o.rotate_seed = (uint64_t)rotate_seed;
    if (damp > 0) o.damp = damp;
    /* The default search weights by diag(H); RTN has no Hessian and keeps min-max. */
    if (o.rtn && !have_search) o.scale_search = SP_QSEARCH_MINMAX;
    /* GGUF types as levels (issue 11). Q4_0/Q5_0/Q8_0 are plain levels with group 32,
     * symmetric; the other types carry their own group, zero point, offsets and super-block
     * scales (o.gtypes, kernels/sp_gtype.h). One level per bit width, so one type per width. */
    if (gguf_type || gguf_levels) {
        SP_RETURN_IF(have_group && o.group_size != 32, err, SP_EINVAL,
                     "--format gguf / GGUF --levels: the group size is the type's (drop "
                     "--group-size)");
        SP_RETURN_IF(have_asym, err, SP_EINVAL, "--format gguf / GGUF --levels: the zero point "
                     "is the type's (drop --asym)");
        o.group_size = 32;
        o.sym = 1;
        /* ggml's own scale rule with the diag(H) shrink: the lowest KL in 5 of 6 cases of
         * bench/run_gguf.sh (docs/benchmarks.md, "GGUF") */
        if (!have_search) o.scale_search = SP_QSEARCH_GGUF;
        int fbits = 0;
        sp_gtype_level(gguf_type, &fbits, NULL, NULL);
        for (int i = 0; i < (gguf_levels ? o.n_levels : 0); i++) {
            const int b = o.levels[i];
            SP_RETURN_IF(type_of[b] && type_of[b] != ltypes[i], err, SP_EINVAL,
                         "--levels: %s and %s are both %d-bit levels (one type per bit width)",
                         sp_gtype_name(type_of[b]), sp_gtype_name(ltypes[i]), b);
            type_of[b] = ltypes[i];
        }
        if (gguf_type) {
            SP_RETURN_IF(type_of[fbits] && type_of[fbits] != gguf_type, err, SP_EINVAL,
                         "--format %s and --levels %s are both %d-bit levels (one type per bit "
                         "width)", sp_gtype_name(gguf_type), sp_gtype_name(type_of[fbits]), fbits);
            type_of[fbits] = gguf_type;
        }
        if (!have_bits) o.bits = gguf_type ? fbits : o.levels[0];
        SP_RETURN_IF(have_bits && !type_of[o.bits] && gguf_levels, err, SP_EINVAL,
                     "--bits %d: not one of the GGUF --levels", o.bits);
    }
    for (int i = 0; i < (have_levels && !gguf_levels ? o.n_levels : 0); i++) {
        const int b = o.levels[i];
        SP_RETURN_IF(group_of[b] && lgroups[i] && group_of[b] != lgroups[i], err, SP_EINVAL,
                     "--levels: %dg%d and %dg%d are both %d-bit levels (one group size per bit "
                     "width)", b, group_of[b], b, lgroups[i], b);
        group_of[b] = lgroups[i];
    }
    /* --bits is always stored: add it to --levels when missing. */
    int found = 0;
    for (int i = 0; i < o.n_levels; i++) found |= o.levels[i] == o.bits;
    if (!have_levels || !found) {
        SP_RETURN_IF(o.n_levels >= SP_QUANTIZE_MAX_LEVELS, err, SP_EINVAL, "--levels: too many levels");
        o.levels[o.n_levels++] = o.bits;
    }
    qsort(o.levels, (size_t)o.n_levels, sizeof(int), cmp_int);
    for (int i = 1; i < o.n_levels; i++)
        SP_RETURN_IF(o.levels[i] == o.levels[i - 1], err, SP_EINVAL, "--levels: %d appears twice", o.levels[i]);
    for (int i = 0; i < o.n_levels; i++) { /* Q4_0/Q5_0/Q8_0 stay plain levels */
        o.gtypes[i] = sp_gtype_is_level(type_of[o.levels[i]]) ? type_of[o.levels[i]] : 0;
        /* a level's own group equal to --group-size is no level of its own: stored as 0 */
        o.level_group[i] = group_of[o.levels[i]] == o.group_size ? 0 : group_of[o.levels[i]];
    }
    if (gguf_type || gguf_levels)
        for (int i = 0; i < o.n_levels; i++)
            SP_RETURN_IF(!type_of[o.levels[i]], err, SP_EINVAL,
                         "--bits %d: with GGUF levels every level is a GGUF type (add it to "
                         "--levels)", o.levels[i]);

    /* Checkpointed runs record absolute paths, so resume works from any directory. */
    char *abs[5] = {absolute_path(o.model_dir), absolute_path(o.calib_path),
                    absolute_path(o.out_dir), absolute_path(o.checkpoint_dir),
                    absolute_path(o.imatrix_out)};
    if (o.checkpoint_dir) {
        o.model_dir = abs[0];
        o.calib_path = abs[1];
        o.out_dir = abs[2];
        o.checkpoint_dir = abs[3];
        o.imatrix_out = abs[4];
    }
    o.stop_flag = &g_stop_requested;
    sp_quantize_result r; /* zeroed: a run that fails before its start leaves it untouched */
    memset(&r, 0, sizeof r);
    sp_status st = sp_quantize_run(cx->comm, &o, &r, err);
    print_quantize_result(cx, &o, &r, st, json);
    for (int i = 0; i < 5; i++) free(abs[i]);
    return st;
}

static void print_quantize_result(cli_ctx *cx, const sp_quantize_opts *op, sp_quantize_result *rp,
                                  sp_status st, int json) {
    const sp_quantize_opts o = *op;
    sp_quantize_result r = *rp;
    if (st == SP_OK && cx->rank == 0 && r.warnings[0]) fprintf(stderr, "%s", r.warnings);
    if (st == SP_OK && cx->rank == 0) {
        if (json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "out", o.out_dir);
            add_run_summary(j, &r);
            cJSON_AddNumberToObject(j, "bits", o.bits);
            cJSON *lv = cJSON_AddArrayToObject(j, "levels");
            for (int i = 0; i < o.n_levels; i++) cJSON_AddItemToArray(lv, cJSON_CreateNumber(o.levels[i]));
            cJSON_AddNumberToObject(j, "group_size", o.group_size);
            cJSON_AddBoolToObject(j, "sym", o.sym);
            cJSON_AddBoolToObject(j, "act_order", o.act_order);
            cJSON_AddStringToObject(j, "scale_search", sp_quant_search_name(o.scale_search));
            cJSON_AddBoolToObject(j, "true_sequential", o.true_sequential);
            cJSON_AddStringToObject(j, "method", o.rtn ? "rtn" : "gptq");
            cJSON_AddStringToObject(j, "rotate", sp_rotate_name(o.rotate));
            cJSON_AddNumberToObject(j, "nsamples", o.rtn ? 0 : o.nsamples);
            cJSON_AddNumberToObject(j, "ctx", r.ctx);
            cJSON_AddBoolToObject(j, "ctx_defaulted", r.ctx_defaulted);
            sp_cli_print_json(j);
        } else {
            printf("quantized    %d modules, %s, %d bits (levels", r.modules, o.rtn ? "RTN" : "GPTQ", o.bits);
            for (int i = 0; i < o.n_levels; i++) printf(" %d", o.levels[i]);
            printf("), group %d, %s\n", o.group_size, o.sym ? "sym" : "asym");
            printf("output       %s\n", o.out_dir);
            if (o.rotate)
                printf("rotation     %s, seed %llu (norms folded, lm_head explicit): %.2f s\n",
                       sp_rotate_name(o.rotate), (unsigned long long)o.rotate_seed, r.t_rotate);
            if (!o.rtn)
                printf("calibration  %d windows x %d tokens%s\n", o.nsamples, r.ctx,
                       r.ctx_defaulted ? " (--ctx default: min(2048, max_position_embeddings))" : "");
            printf("time         %.2f s (hessian %.2f, gptq %.2f, share %.2f, propagate %.2f)\n",
                   r.seconds, r.t_hessian, r.t_gptq, r.t_share, r.t_propagate);
            printf("peak RSS     %.1f MB max over %d rank%s\n", r.peak_rss_mb_max, r.ranks, r.ranks == 1 ? "" : "s");
            if (!o.rtn) printf("layer error  %.4e mean relative tr(dW H dW^T)/tr(W H W^T)\n", r.mean_rel_error);
            if (o.checkpoint_dir)
                printf("checkpoints  %d written, main thread blocked %.3f s, background writes %.3f s\n",
                       r.checkpoints, r.ckpt_blocked_s, r.ckpt_write_s);
        }
    }
    free(rp->peak_rss_mb);
    rp->peak_rss_mb = NULL;
}


/* ---- export ----------------------------------------------------------------------------- */

static const char *EXPORT_USAGE =
    "usage: shardpress export --model DIR --format gptq --out DIR [--gptq-v2] [--bits-map FILE]\n"
    "                         [--force]\n"
    "\n"
    "Write a quantized model (the output of quantize) as GPTQ-packed safetensors that inference\n"
    "engines load: qweight int32 [in*bits/32, out], qzeros int32 [groups, out*bits/32] (zero-1,\n"
    "GPTQ v1 layout), scales fp16 [groups, out], g_idx int32 [in], quantize_config.json and a\n"
    "config.json with quantization_config. Modules whose bits differ from the default go into\n"
    "GPTQModel's 'dynamic' overrides.\n"
    "\n"
    "  --model DIR       quantized model directory (config.json + model.sp.h5)\n"
    "  --format gptq     (--format gguf: see shardpress export --format gguf --help)\n"
    "  --out DIR         output directory (must not exist, unless --force)\n"
    "  --gptq-v2         store zero points directly (checkpoint_format gptq_v2); needed when an\n"
    "                    asymmetric group has zero point 0, which v1 cannot represent\n"
    "  --bits-map FILE   'module_name bits' per line: levels to export instead of the defaults\n"
    "  --force           replace an existing --out\n";

static sp_status cmd_export(cli_ctx *cx, int argc, char **argv, sp_err *err) {
    if (sp_gguf_cli_wants(argc, argv))
        return sp_gguf_export_cli(cx->comm, cx->rank, argc, argv, &g_stop_requested, err);
    const char *model = NULL, *out = NULL, *format = NULL, *bits_map = NULL;
    sp_gptq_export_opts eo;
    memset(&eo, 0, sizeof eo);
    int help = 0;
    const sp_opt t[] = {
        SP_OPT_S("model", &model),   SP_OPT_S("out", &out),
        SP_OPT_S("format", &format), SP_OPT_F("gptq-v2", &eo.checkpoint_v2, 1),
        SP_OPT_S("bits-map", &bits_map), SP_OPT_F("force", &eo.force, 1),
    };
    SP_FORWARD(sp_opts_parse("export", t, (int)(sizeof t / sizeof t[0]), argc, argv, &help, NULL,
                             0, NULL, err));
    if (help) {
        if (cx->rank == 0) fputs(EXPORT_USAGE, stdout);
        return SP_OK;
    }
    SP_RETURN_IF(!model || !out, err, SP_EINVAL, "export: --model and --out are required");
    SP_RETURN_IF(!format || strcmp(format, "gptq") != 0, err, SP_EUNSUPPORTED,
                 "export: --format '%s' is not supported (gptq, gguf)", format ? format : "");
    sp_bits_map map;
    memset(&map, 0, sizeof map);
    sp_status st = SP_OK;
    if (bits_map) st = sp_bits_map_read(bits_map, &map, err);
    eo.n_overrides = map.n;
    eo.override_modules = (const char *const *)map.names;
    eo.override_bits = map.bits;
    eo.stop_flag = &g_stop_requested;
    /* A single writer: rank 0 exports, the others wait for its verdict. */
    if (st == SP_OK && cx->rank == 0) st = sp_export_gptq(model, out, &eo, err);
    sp_bits_map_free(&map);
    st = sp_mpi_agree(cx->comm, st, err);
    if (st == SP_OK && cx->rank == 0) printf("exported     %s -> %s (gptq%s)\n", model, out, eo.checkpoint_v2 ? " v2" : "");
    return st;
}


/* ---- resume ------------------------------------------------------------------------------ */

static const char *RESUME_USAGE =
    "usage: mpirun -n M shardpress resume DIR [--json]\n"
    "\n"
    "Continue the quantize run whose --checkpoint-dir is DIR from its newest checkpoint that\n"
    "verifies (a corrupt or partial newest one is reported and the previous one used), on any\n"
    "number of ranks M. The options come from DIR/run.json; the run refuses to continue when\n"
    "the model or the calibration text changed. The output is byte-identical to an\n"
    "uninterrupted run.\n";

static sp_status cmd_resume(cli_ctx *cx, int argc, char **argv, sp_err *err) {
    int json = 0, help = 0, n_pos = 0;
    const char *dir = NULL;
    const sp_opt t[] = {SP_OPT_F("json", &json, 1)};
    SP_FORWARD(sp_opts_parse("resume", t, 1, argc, argv, &help, &dir, 1, &n_pos, err));
    if (help) {
        if (cx->rank == 0) fputs(RESUME_USAGE, stdout);
        return SP_OK;
    }
    SP_RETURN_IF(n_pos != 1, err, SP_EINVAL, "resume: expected one checkpoint directory");
    if (sp_search_is_checkpoint_dir(dir)) {
        sp_search_result sr;
        sp_status s2 = sp_search_resume(cx->comm, dir, &g_stop_requested, &sr, err);
        sp_search_opts so;
        sp_search_defaults(&so);
        char map[64] = "(see search.json)";
        so.out_map = map;
        if (s2 == SP_OK) sp_search_print_result(cx->rank, &so, &sr, json);
        return s2;
    }
    sp_quantize_result r;
    memset(&r, 0, sizeof r);
    sp_status st = sp_quantize_resume(cx->comm, dir, &g_stop_requested, &r, err);
    /* The run's own options live in run.json; the summary shows what resume did. */
    if (st == SP_OK && cx->rank == 0) {
        if (r.warnings[0]) fprintf(stderr, "%s", r.warnings);
        if (json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "checkpoint_dir", dir);
            add_run_summary(j, &r);
            sp_cli_print_json(j);
        } else {
            printf("resumed      %s from block %d on %d rank%s: %d modules done\n", dir,
                   r.start_layer, r.ranks, r.ranks == 1 ? "" : "s", r.modules);
            printf("time         %.2f s, peak RSS %.1f MB max, %d checkpoints written\n", r.seconds,
                   r.peak_rss_mb_max, r.checkpoints);
        }
    }
    free(r.peak_rss_mb);
    return st;
}

/* ---- commands whose CLI lives in their module ---------------------------------------------- */

static sp_status cmd_search(cli_ctx *cx, int argc, char **argv, sp_err *err) {
    return sp_search_cli(cx->comm, cx->rank, argc, argv, &g_stop_requested, err);
}


static sp_status cmd_plan(cli_ctx *cx, int argc, char **argv, sp_err *err) {
    return sp_plan_cli(cx->comm, cx->rank, argc, argv, err);
}

static sp_status cmd_eval(cli_ctx *cx, int argc, char **argv, sp_err *err) {
    return sp_eval_cli(cx->comm, cx->rank, argc, argv, &g_stop_requested, err);
}

static sp_status cmd_generate(cli_ctx *cx, int argc, char **argv, sp_err *err) {
    return sp_generate_cli(cx->comm, cx->rank, argc, argv, &g_stop_requested, err);
}

static sp_status cmd_tokenize(cli_ctx *cx, int argc, char **argv, sp_err *err) {
    return sp_tokenize_cli(cx->comm, cx->rank, argc, argv, &g_stop_requested, err);
}

static sp_status cmd_exchange(cli_ctx *cx, int argc, char **argv, sp_err *err) {
    return sp_exchange_cli(cx->comm, cx->rank, argc, argv, &g_stop_requested, err);
}

/* ---- dispatch ---------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    sp_status (*run)(cli_ctx *, int, char **, sp_err *);
    const char *summary;
} subcommand;

static const subcommand COMMANDS[] = {
    {"eval", cmd_eval, "perplexity and KL divergence of a model on a text"},
    {"generate", cmd_generate, "generate text from a model"},
    {"quantize", cmd_quantize, "GPTQ/RTN quantization of every linear layer, across ranks"},
    {"search", cmd_search, "choose per-module bit widths under a budget (sensitivity, EvoPress)"},
    {"resume", cmd_resume, "continue a checkpointed quantize or search run (any ranks)"},
    {"export", cmd_export, "write a model as GPTQ-packed safetensors or one GGUF file"},
    {"plan", cmd_plan, "predict memory and time per rank of a quantize run"},
    {"tokenize", cmd_tokenize, "print the token ids or pieces of a text"},
    {"exchange", cmd_exchange, "one round of EF21 compressed model-delta exchange between sites"},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *f) {
    fprintf(f, "usage: [mpirun -n N | srun --mpi=pmix] shardpress <command> [options]\n\n"
               "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\n'shardpress <command> --help' describes each command.\n");
}

/* Threads of the products (kernels/sp_blas.h): SP_NUM_THREADS, else OPENBLAS_NUM_THREADS, else
 * OMP_NUM_THREADS when the user set one; otherwise the node's cores are shared among the ranks
 * on it, so N ranks do not each start one thread per core. OpenBLAS itself is set to 1 thread
 * (sp_blas_set_threads does it): its own threading gives bits that depend on the thread count,
 * while sp_blas's tiles do not, so the count only changes the speed. Collective (ends with
 * sp_mpi_agree), because a rank that could not start its threads must not run the job alone. */
static sp_status configure_blas_threads(MPI_Comm comm, sp_err *err) {
    static const char *vars[] = {"SP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"};
    long t = 0;
    sp_status st = SP_OK;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0] && t == 0 && st == SP_OK; i++) {
        const char *v = getenv(vars[i]);
        if (!v || !*v) continue;
        char *end = NULL;
        t = strtol(v, &end, 10);
        if (*end != '\0' || t < 1 || t > 4096)
            st = sp_err_set(err, SP_EINVAL, "%s=%s: expected a thread count in 1..4096", vars[i], v);
    }
    if (st == SP_OK && t == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int local = sp_mpi_local_size(comm);
        t = cores / (local > 0 ? local : 1);
        if (t < 1) t = 1;
    }
    if (st == SP_OK) st = sp_blas_set_threads((int)t, err);
    return sp_mpi_agree(comm, st, err);
}

/* Issue 13: HDF5 1.10.8 can fail to tear itself down after reading a corrupt file (the flip
 * sweep found one: an internal free list stays in use) and then prints "HDF5: infinite loop
 * closing library" and a line of package names at exit. After a failure the one-line error
 * has been printed already, so HDF5's teardown runs here, before MPI_Finalize would run it,
 * with stderr pointed at /dev/null for its duration. */
static void quiet_hdf5_teardown(void) {
    fflush(stderr);
    int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
    if (saved >= 0 && null >= 0 && dup2(null, STDERR_FILENO) >= 0) {
        (void)H5close();
        fflush(stderr);
        (void)dup2(saved, STDERR_FILENO);
    }
    if (null >= 0) close(null);
    if (saved >= 0) close(saved);
}

int main(int argc, char **argv) {
    /* The preemption signals are caught before MPI starts: a SIGUSR1 from Slurm that arrives
     * during MPI_Init must not kill the process (it is then seen at the first block boundary). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    cli_ctx cx = {.comm = MPI_COMM_WORLD};
    MPI_Comm_rank(cx.comm, &cx.rank);
    MPI_Comm_size(cx.comm, &cx.size);
    /* MPI errors come back as codes, so that they reach sp_mpi_agree instead of aborting. */
    MPI_Comm_set_errhandler(cx.comm, MPI_ERRORS_RETURN);

    sp_err err = {SP_OK, ""};
    sp_status st = SP_OK;
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        if (cx.rank == 0) usage(stdout);
    } else if (!strcmp(argv[1], "--version")) {
        if (cx.rank == 0) printf("shardpress %s\n", SP_VERSION);
    } else {
        const subcommand *cmd = NULL;
        for (size_t i = 0; i < N_COMMANDS; i++)
            if (!strcmp(argv[1], COMMANDS[i].name)) cmd = &COMMANDS[i];
        if (!cmd) {
            st = sp_err_set(&err, SP_EINVAL, "unknown command '%s' (see shardpress --help)", argv[1]);
        } else if (provided < MPI_THREAD_MULTIPLE) {
            st = sp_err_set(&err, SP_EMPI, "the MPI library does not provide MPI_THREAD_MULTIPLE");
        } else {
            st = configure_blas_threads(cx.comm, &err);
            optind = 1;
            if (st == SP_OK) st = cmd->run(&cx, argc - 1, argv + 1, &err);
            sp_blas_shutdown();
        }
    }
    if (st != SP_OK && cx.rank == 0) fprintf(stderr, "shardpress: error: %s\n", err.msg);
    if (st != SP_OK) quiet_hdf5_teardown();
    fflush(stdout);
    MPI_Finalize();
    return st == SP_OK ? 0 : st == SP_EINTERRUPTED ? SP_EXIT_PREEMPTED : 1;
}
