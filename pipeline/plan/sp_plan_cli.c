/* sp_plan_cli.c — `shardpress plan`: options, then the report (human or JSON). See sp_plan.h. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sp_quant.h"
#include "mpi/sp_mpi.h"
#include "pipeline/sp_cli.h"
#include "pipeline/sp_gguf_cli.h"
#include "pipeline/sp_opts.h"
#include "pipeline/plan/sp_plan.h"
#include "pipeline/search/sp_search.h"

static const char *PLAN_USAGE =
    "usage: shardpress plan --model DIR --ranks R [options]\n"
    "       shardpress plan --calibrate [--save-rates FILE] [--json]\n"
    "\n"
    "Predict the peak memory per rank and the time of `shardpress quantize` with these\n"
    "settings, from config.json and the weight files' headers only (no tensor is read).\n"
    "\n"
    "  --model DIR            model directory (HF safetensors, sharded or not) or llama2.c .bin\n"
    "  --ranks R              MPI ranks the job would run on (1)\n"
    "  --nsamples N           calibration windows (128)\n"
    "  --ctx T                tokens per window (default: min(2048, max_position_embeddings))\n"
    "  --bits B               bits used to propagate (4)\n"
    "  --levels L,L,...       bit levels stored (default: just --bits)\n"
    "  --group-size G         columns per group (128; -1: one group per row)\n"
    "  --act-order | --no-act-order, --scale-search minmax|mse|hmse,\n"
    "  --true-sequential | --no-true-sequential   as quantize (same defaults)\n"
    "  --block B              GPTQ column block (128)\n"
    "  --checkpoint-every B   include checkpoints every B blocks\n"
    "  --mem-per-rank SIZE    memory one rank may use (e.g. 24G): says whether it fits, and\n"
    "                         what would (more ranks, or fewer windows)\n"
    "  --gpu-mem SIZE         memory of one rank's GPU (e.g. 80G) for quantize --device cuda:\n"
    "                         prints the predicted GPU peak per rank and whether it fits\n"
    "  --strict               exit with an error when it does not fit\n"
    "  --calibrate            measure this machine's rates (a few seconds): sgemm, dgemm,\n"
    "                         Hessian rounding, disk write/read in --calibrate-dir, baseline RSS\n"
    "  --calibrate-dir DIR    where --calibrate writes its 64 MiB test file (.)\n"
    "  --rates FILE           read rates from a JSON file (keys: sgemm_gflops, dgemm_gflops,\n"
    "                         round_ns, write_mb_s, read_mb_s, net_mb_s, base_mb)\n"
    "  --save-rates FILE      write the rates used to FILE (reuse with --rates)\n"
    "  --search               predict `shardpress search` instead (with --generations G,\n"
    "                         --offspring K, --stages T,.., --survivors S,.., --pool-windows W,\n"
    "                         --levels as stored; defaults as search's)\n"
    "  --json                 print one JSON object\n"
    "  -h, --help             this text\n"
    "\n"
    "Rates describe one rank: calibrate with the OPENBLAS_NUM_THREADS the ranks will have.\n";

#define GIB 1073741824.0

/* "1.5 GiB", "320.0 MiB", ... */
static const char *human_bytes(char *buf, size_t cap, double b) {
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) b /= 1024, i++;
    snprintf(buf, cap, i == 0 ? "%.0f %s" : "%.1f %s", b, u[i]);
    return buf;
}

static const char *human_time(char *buf, size_t cap, double s) {
    if (s < 120) snprintf(buf, cap, "%.2g s", s);
    else if (s < 7200) snprintf(buf, cap, "%.1f min", s / 60);
    else snprintf(buf, cap, "%.1f h", s / 3600);
    return buf;
}

static cJSON *rank_json(const sp_plan_rank *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "rank", r->rank);
    cJSON_AddNumberToObject(o, "windows", r->windows);
    cJSON_AddStringToObject(o, "peak_at", r->peak_at ? r->peak_at : "");
    cJSON_AddNumberToObject(o, "heap_bytes", r->heap);
    cJSON_AddNumberToObject(o, "mapped_bytes", r->mapped);
    cJSON_AddNumberToObject(o, "rss_bytes", r->rss);
    cJSON_AddNumberToObject(o, "rss_mb", r->rss / 1048576.0);
    cJSON *it = cJSON_AddObjectToObject(o, "items");
    for (int i = 0; i < SP_PLAN_M_COUNT; i++) cJSON_AddNumberToObject(it, sp_plan_mem_key(i), r->item[i]);
    return o;
}

static void print_json(const char *model_dir, const sp_plan_model *m, const sp_plan_opts *o,
                       const sp_plan_rates *r, const sp_plan_result *res, int ctx_defaulted,
                       const sp_plan_gpu *gpu) {
    const sp_config *c = &m->cfg;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", model_dir);
    cJSON *mo = cJSON_AddObjectToObject(j, "model_info");
    cJSON_AddStringToObject(mo, "arch", c->arch);
    cJSON_AddStringToObject(mo, "format", m->format);
    cJSON_AddStringToObject(mo, "dtype", sp_dtype_name(m->dtype));
    cJSON_AddNumberToObject(mo, "files", m->n_files);
    cJSON_AddNumberToObject(mo, "file_bytes", m->file_bytes);
    cJSON_AddNumberToObject(mo, "block_bytes", m->block_bytes);
    cJSON_AddNumberToObject(mo, "layers", c->n_layers);
    cJSON_AddNumberToObject(mo, "hidden", c->dim);
    cJSON_AddNumberToObject(mo, "intermediate", c->hidden_dim);
    cJSON_AddNumberToObject(mo, "heads", c->n_heads);
    cJSON_AddNumberToObject(mo, "kv_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(mo, "vocab", c->vocab_size);
    cJSON_AddNumberToObject(j, "ranks", o->ranks);
    cJSON_AddNumberToObject(j, "nsamples", o->nsamples);
    cJSON_AddNumberToObject(j, "ctx", o->ctx);
    cJSON_AddBoolToObject(j, "ctx_defaulted", ctx_defaulted);
    cJSON_AddNumberToObject(j, "bits", o->bits);
    cJSON *lv = cJSON_AddArrayToObject(j, "levels");
    for (int i = 0; i < o->n_levels; i++) cJSON_AddItemToArray(lv, cJSON_CreateNumber(o->levels[i]));
    cJSON_AddNumberToObject(j, "group_size", o->group_size);
    cJSON *ra = cJSON_AddObjectToObject(j, "rates");
    cJSON_AddStringToObject(ra, "source", r->source);
    cJSON_AddNumberToObject(ra, "sgemm_gflops", r->sgemm_gflops);
    cJSON_AddNumberToObject(ra, "dgemm_gflops", r->dgemm_gflops);
    cJSON_AddNumberToObject(ra, "round_ns", r->round_ns);
    cJSON_AddNumberToObject(ra, "write_mb_s", r->write_mb_s);
    cJSON_AddNumberToObject(ra, "read_mb_s", r->read_mb_s);
    cJSON_AddNumberToObject(ra, "net_mb_s", r->net_mb_s);
    cJSON_AddNumberToObject(ra, "base_mb", r->base_mb);
    cJSON *me = cJSON_AddObjectToObject(j, "memory");
    cJSON_AddItemToObject(me, "rank0", rank_json(&res->rank0));
    if (o->ranks > 1) cJSON_AddItemToObject(me, "other", rank_json(&res->other));
    cJSON_AddNumberToObject(me, "heap_bytes_max", res->heap_max);
    cJSON_AddNumberToObject(j, "peak_rss_mb_max", res->rss_max / 1048576.0);
    cJSON *ph = cJSON_AddObjectToObject(j, "phase_seconds");
    for (int i = 0; i < SP_PLAN_T_COUNT; i++) cJSON_AddNumberToObject(ph, sp_plan_phase_key(i), res->t[i]);
    cJSON_AddNumberToObject(j, "seconds", res->t_total);
    cJSON_AddNumberToObject(j, "sgemm_gflop", res->flops_sgemm / 1e9);
    cJSON_AddNumberToObject(j, "dgemm_gflop", res->flops_dgemm / 1e9);
    if (o->checkpoint_every > 0) {
        cJSON *ck = cJSON_AddObjectToObject(j, "checkpoints");
        cJSON_AddNumberToObject(ck, "every", o->checkpoint_every);
        cJSON_AddNumberToObject(ck, "count", res->n_checkpoints);
        cJSON_AddNumberToObject(ck, "bytes_each", res->ckpt_bytes);
        cJSON_AddNumberToObject(ck, "seconds_each", res->ckpt_seconds);
    }
    if (res->fits >= 0) {
        cJSON_AddNumberToObject(j, "mem_per_rank_bytes", o->mem_per_rank);
        cJSON_AddBoolToObject(j, "fits", res->fits);
        if (!res->fits) {
            cJSON_AddNumberToObject(j, "suggest_ranks", res->min_ranks);
            cJSON_AddNumberToObject(j, "suggest_nsamples", res->max_nsamples);
        }
    }
    if (gpu->fits >= 0) { /* --gpu-mem: quantize --device cuda's device memory */
        cJSON *g = cJSON_AddObjectToObject(j, "gpu");
        cJSON_AddNumberToObject(g, "gpu_mem_bytes", o->gpu_mem);
        cJSON_AddNumberToObject(g, "peak_bytes", gpu->peak);
        cJSON_AddNumberToObject(g, "block_weights_bytes", gpu->weights);
        cJSON_AddNumberToObject(g, "linear_bytes", gpu->linear);
        cJSON_AddNumberToObject(g, "hessians_bytes", gpu->hessians);
        cJSON_AddNumberToObject(g, "factors_bytes", gpu->factors);
        cJSON_AddNumberToObject(g, "gptq_work_bytes", gpu->gptq_work);
        cJSON_AddBoolToObject(g, "fits", gpu->fits);
    }
    char *s = cJSON_PrintUnformatted(j);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

static void print_human(const char *model_dir, const sp_plan_model *m, const sp_plan_opts *o,
                        const sp_plan_rates *r, const sp_plan_result *res, const sp_plan_gpu *gpu) {
    const sp_config *c = &m->cfg;
    char a[32], b[32];
    printf("model        %s: %s, %s %s, %d file%s, %s\n", model_dir, c->arch, m->format,
           sp_dtype_name(m->dtype), m->n_files, m->n_files == 1 ? "" : "s",
           human_bytes(a, sizeof a, m->file_bytes));
    printf("             %d layers, hidden %d, intermediate %d, heads %d/%d (head dim %d), "
           "vocab %d, %s head\n", c->n_layers, c->dim, c->hidden_dim, c->n_heads, c->n_kv_heads,
           c->head_dim, c->vocab_size, c->tie_embeddings ? "tied" : "separate");
    printf("run          %d rank%s, %d windows x %d tokens (%d on rank 0), bits %d (levels",
           o->ranks, o->ranks == 1 ? "" : "s", o->nsamples, o->ctx, res->rank0.windows, o->bits);
    for (int i = 0; i < o->n_levels; i++) printf(" %d", o->levels[i]);
    printf("), group %d\n", o->group_size);
    printf("rates        %s: sgemm %.1f GF/s, dgemm %.1f GF/s, rounding %.2f ns, write %.0f MB/s,\n"
           "             read %.0f MB/s, network %.0f MB/s, baseline %.1f MiB\n", r->source,
           r->sgemm_gflops, r->dgemm_gflops, r->round_ns, r->write_mb_s, r->read_mb_s,
           r->net_mb_s, r->base_mb);
    int two = o->ranks > 1;
    char h0[48], h1[48];
    snprintf(h0, sizeof h0, "rank 0 (%s)", res->rank0.peak_at);
    snprintf(h1, sizeof h1, "rank %d (%s)", res->other.rank, res->other.peak_at);
    printf("\nmemory per rank at its peak                  %16s", h0);
    if (two) printf("  %16s", h1);
    printf("\n");
    for (int i = 0; i < SP_PLAN_M_COUNT; i++) {
        printf("  %-42s %16s", sp_plan_mem_label(i), human_bytes(a, sizeof a, res->rank0.item[i]));
        if (two) printf("  %16s", human_bytes(b, sizeof b, res->other.item[i]));
        printf("\n");
    }
    printf("  %-42s %16s", "heap peak (must fit in memory)", human_bytes(a, sizeof a, res->rank0.heap));
    if (two) printf("  %16s", human_bytes(b, sizeof b, res->other.heap));
    printf("\n  %-42s %16s", "+ weight pages mapped (page cache)", human_bytes(a, sizeof a, res->rank0.mapped));
    if (two) printf("  %16s", human_bytes(b, sizeof b, res->other.mapped));
    printf("\n  %-42s %16s", "= peak RSS as quantize reports it", human_bytes(a, sizeof a, res->rank0.rss));
    if (two) printf("  %16s", human_bytes(b, sizeof b, res->other.rss));
    printf("\n\ntime         ");
    for (int i = 0; i < SP_PLAN_T_COUNT; i++)
        printf("%s %s%s", sp_plan_phase_key(i), human_time(a, sizeof a, res->t[i]),
               i + 1 == SP_PLAN_T_COUNT ? "\n" : i == 2 ? ",\n             " : ", ");
    printf("             total %s (%.3g TFLOP sgemm + %.3g TFLOP dgemm on the busiest rank)\n",
           human_time(a, sizeof a, res->t_total), res->flops_sgemm / 1e12, res->flops_dgemm / 1e12);
    if (o->checkpoint_every > 0)
        printf("checkpoints  every %d block%s: %d of %s, about %s each in the background\n",
               o->checkpoint_every, o->checkpoint_every == 1 ? "" : "s", res->n_checkpoints,
               human_bytes(a, sizeof a, res->ckpt_bytes), human_time(b, sizeof b, res->ckpt_seconds));
    if (gpu->fits >= 0) {
        char c1[32], c2[32], c3[32], c4[32];
        printf("GPU          --device cuda: peak %s per rank (block weights %s + Hessians %s, "
               "or GPTQ factors %s + work %s): %s --gpu-mem %s\n",
               human_bytes(a, sizeof a, gpu->peak), human_bytes(c1, sizeof c1, gpu->weights),
               human_bytes(c2, sizeof c2, gpu->hessians), human_bytes(c3, sizeof c3, gpu->factors),
               human_bytes(c4, sizeof c4, gpu->gptq_work), gpu->fits ? "fits in" : "DOES NOT FIT in",
               human_bytes(b, sizeof b, o->gpu_mem));
    }
    if (res->fits < 0) return;
    printf("\n");
    if (res->fits) {
        printf("fits: %s of %s per rank\n", human_bytes(a, sizeof a, res->heap_max),
               human_bytes(b, sizeof b, o->mem_per_rank));
        return;
    }
    printf("does not fit: %s needed per rank, %s available.", human_bytes(a, sizeof a, res->heap_max),
           human_bytes(b, sizeof b, o->mem_per_rank));
    if (res->min_ranks) printf(" Try --ranks %d", res->min_ranks);
    if (res->max_nsamples)
        printf("%s--nsamples %d on %d rank%s", res->min_ranks ? ", or " : " Try ", res->max_nsamples,
               o->ranks, o->ranks == 1 ? "" : "s");
    if (!res->min_ranks && !res->max_nsamples)
        printf(" No rank count fits: one block's Hessians, GPTQ work and window scratch alone "
               "exceed it; use more memory per rank (fewer ranks per node) or a smaller --ctx");
    printf(".\n");
}

/* Rank 0's part: read, (calibrate), predict, print. */
static sp_status plan_rank0(const char *model_dir, sp_plan_opts *o, int calibrate,
                            const char *cal_dir, const char *rates_path, const char *save_rates,
                            int json, int strict, sp_err *err) {
    sp_plan_model m;
    if (model_dir) SP_FORWARD(sp_plan_model_read(&m, model_dir, err));
    sp_plan_rates r;
    sp_plan_rates_default(&r);
    if (rates_path) SP_FORWARD(sp_plan_rates_load(&r, rates_path, err));
    if (calibrate) SP_FORWARD(sp_plan_rates_calibrate(&r, cal_dir, err));
    if (save_rates) SP_FORWARD(sp_plan_rates_save(&r, save_rates, err));
    if (!model_dir) { /* --calibrate alone: the rates of this machine */
        if (json)
            printf("{\"sgemm_gflops\":%g,\"dgemm_gflops\":%g,\"round_ns\":%g,\"write_mb_s\":%g,"
                   "\"read_mb_s\":%g,\"net_mb_s\":%g,\"base_mb\":%g}\n", r.sgemm_gflops,
                   r.dgemm_gflops, r.round_ns, r.write_mb_s, r.read_mb_s, r.net_mb_s, r.base_mb);
        else
            printf("rates        %s: sgemm %.1f GF/s, dgemm %.1f GF/s, rounding %.2f ns, write %.0f "
                   "MB/s,\n             read %.0f MB/s, network %.0f MB/s, baseline %.1f MiB\n",
                   r.source, r.sgemm_gflops, r.dgemm_gflops, r.round_ns, r.write_mb_s,
                   r.read_mb_s, r.net_mb_s, r.base_mb);
        return SP_OK;
    }
    int ctx_defaulted = o->ctx <= 0;
    if (ctx_defaulted) o->ctx = sp_config_default_ctx(&m.cfg);
    sp_plan_result res;
    SP_FORWARD(sp_plan_predict(&m, o, &r, &res, err));
    if (ctx_defaulted && !json)
        printf("note         --ctx %d: the default, min(2048, max_position_embeddings %d)\n",
               o->ctx, m.cfg.max_seq_len);
    sp_plan_gpu gpu;
    sp_plan_gpu_predict(&m, o, &gpu);
    if (json) print_json(model_dir, &m, o, &r, &res, ctx_defaulted, &gpu);
    else print_human(model_dir, &m, o, &r, &res, &gpu);
    fflush(stdout);
    SP_RETURN_IF(strict && gpu.fits == 0, err, SP_EINVAL, "plan: does not fit the GPU: %.2f GiB "
                 "of device memory needed per rank, --gpu-mem is %.2f GiB", gpu.peak / GIB,
                 o->gpu_mem / GIB);
    SP_RETURN_IF(strict && res.fits == 0, err, SP_EINVAL, "plan: does not fit: %.2f GiB needed "
                 "per rank, --mem-per-rank is %.2f GiB", res.heap_max / GIB, o->mem_per_rank / GIB);
    return SP_OK;
}

/* --search: the search's memory per rank and time per generation. */
static sp_status plan_search_rank0(const char *model_dir, sp_plan_search_opts *o, int calibrate,
                                   const char *cal_dir, const char *rates_path, int json,
                                   sp_err *err) {
    sp_plan_model m;
    SP_FORWARD(sp_plan_model_read(&m, model_dir, err));
    sp_plan_rates r;
    sp_plan_rates_default(&r);
    if (rates_path) SP_FORWARD(sp_plan_rates_load(&r, rates_path, err));
    if (calibrate) SP_FORWARD(sp_plan_rates_calibrate(&r, cal_dir, err));
    if (o->ctx <= 0) o->ctx = sp_config_default_ctx(&m.cfg);
    SP_RETURN_IF(o->ctx > m.cfg.max_seq_len, err, SP_EINVAL, "plan: --ctx %d is larger than the "
                 "model's maximum (max_position_embeddings %d)", o->ctx, m.cfg.max_seq_len);
    sp_plan_search_result s;
    SP_FORWARD(sp_plan_search_predict(&m, o, &r, &s, err));
    const double MB = 1048576.0;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", model_dir);
        cJSON_AddStringToObject(j, "job", "search");
        cJSON_AddNumberToObject(j, "ranks", o->ranks);
        cJSON_AddNumberToObject(j, "ctx", o->ctx);
        cJSON_AddNumberToObject(j, "peak_rss_mb", s.rss / MB);
        cJSON *mi = cJSON_AddObjectToObject(j, "memory_mb");
        cJSON_AddNumberToObject(mi, "blocks", s.blocks / MB);
        cJSON_AddNumberToObject(mi, "scratch", s.scratch / MB);
        cJSON_AddNumberToObject(mi, "head", s.head / MB);
        cJSON_AddNumberToObject(mi, "pool", s.pool / MB);
        cJSON_AddNumberToObject(mi, "reference", s.reference / MB);
        cJSON_AddNumberToObject(mi, "states", s.states / MB);
        cJSON_AddNumberToObject(mi, "dense_mapped", s.mapped / MB);
        cJSON_AddNumberToObject(j, "reference_windows", s.reference_windows);
        cJSON_AddNumberToObject(j, "seconds_sensitivity", s.t_sensitivity);
        cJSON_AddNumberToObject(j, "layer_evaluations_sensitivity", s.layer_evals_sensitivity);
        cJSON_AddNumberToObject(j, "seconds_reference", s.t_reference);
        cJSON_AddNumberToObject(j, "seconds_per_generation", s.t_generation);
        cJSON_AddNumberToObject(j, "seconds", s.t_total);
        cJSON_AddNumberToObject(j, "layer_evaluations_per_generation", s.layer_evals_gen);
        cJSON_AddNumberToObject(j, "layer_evaluations_full_per_generation", s.layer_evals_full_gen);
        cJSON_AddStringToObject(j, "rates", r.source);
        char *t = cJSON_PrintUnformatted(j);
        if (t) printf("%s\n", t);
        free(t);
        cJSON_Delete(j);
        return SP_OK;
    }
    printf("search       %s on %d rank%s, ctx %d, %d generations x %d offspring (rates: %s)\n",
           model_dir, o->ranks, o->ranks == 1 ? "" : "s", o->ctx, o->generations, o->offspring,
           r.source);
    printf("memory       %.1f MiB per rank: blocks %.1f, scratch %.1f, head %.1f, pool %.1f, "
           "dense reference %.1f, states %.1f, dense model's mapped pages %.1f\n", s.rss / MB,
           s.blocks / MB, s.scratch / MB, s.head / MB, s.pool / MB, s.reference / MB,
           s.states / MB, s.mapped / MB);
    printf("time         reference %.3g s (%.0f windows), sensitivity table %.3g s (%.4g "
           "window-layers), %.3g s per generation, %.3g s in all\n", s.t_reference,
           s.reference_windows, s.t_sensitivity, s.layer_evals_sensitivity, s.t_generation,
           s.t_total);
    printf("work         %.4g window-layer forwards per generation (%.4g without the prefix "
           "cache)\n", s.layer_evals_gen, s.layer_evals_full_gen);
    return SP_OK;
}

/* Option-table helpers (pipeline/sp_opts.h) for the values that are more than a number. */
typedef struct {
    int *v, max, *n, given;
    long lo, hi;
} int_list;

static sp_status list_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    int_list *l = dst;
    l->given = 1;
    return sp_cli_int_list(opt, val, l->lo, l->hi, l->v, l->max, l->n, err);
}

/* --levels as quantize reads it ("2,3,4g128" or GGUF type names): the plan needs the bit widths
 * only (a level's own group size moves its group parameters, a few bytes per row). */
static sp_status levels_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    (void)opt;
    int_list *l = dst;
    int types[SP_PLAN_MAX_LEVELS], groups[SP_PLAN_MAX_LEVELS], is_types = 0;
    l->given = 1;
    return sp_gguf_cli_levels(val, l->v, l->max, l->n, types, groups, &is_types, err);
}

static sp_status group_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    long v = 0;
    SP_FORWARD(sp_cli_int(opt, val, -1, 1 << 30, &v, err));
    SP_RETURN_IF(v == 0, err, SP_EINVAL, "%s: must be >= 1, or -1 for one group per row", opt);
    *(int *)dst = (int)v;
    return SP_OK;
}

static sp_status search_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    int ss = sp_quant_search_parse(val);
    SP_RETURN_IF(ss < 0, err, SP_EINVAL, "%s: '%s' is not minmax, mse or hmse", opt, val);
    *(int *)dst = ss == SP_QSEARCH_HMSE;
    return SP_OK;
}

static sp_status size_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    return sp_plan_parse_size(opt, val, dst, err);
}

sp_status sp_plan_cli(MPI_Comm comm, int rank, int argc, char **argv, sp_err *err) {
    sp_plan_opts o;
    sp_plan_opts_default(&o);
    const char *model = NULL, *cal_dir = ".", *rates = NULL, *save = NULL;
    int json = 0, calibrate = 0, strict = 0, help = 0, search = 0, nsurv = 3;
    sp_plan_search_opts so;
    sp_plan_search_opts_default(&so);
    int_list levels = {o.levels, SP_PLAN_MAX_LEVELS, &o.n_levels, 0, 2, 8};
    int_list stages = {so.stages, 8, &so.n_stages, 0, 1, 1L << 30};
    int_list survivors = {so.survivors, 8, &nsurv, 0, 1, 4096};
    const sp_opt tab[] = {
        SP_OPT_S("model", &model),
        SP_OPT_I("ranks", &o.ranks, 1, 1 << 24),
        SP_OPT_I("nsamples", &o.nsamples, 1, 1 << 24),
        SP_OPT_I("ctx", &o.ctx, 2, 1 << 24),
        SP_OPT_I("bits", &o.bits, 2, 8),
        SP_OPT_X("levels", &levels, levels_fn),
        SP_OPT_X("group-size", &o.group_size, group_fn),
        SP_OPT_I("block", &o.block, 1, 1 << 20),
        SP_OPT_I("checkpoint-every", &o.checkpoint_every, 1, 1 << 20),
        SP_OPT_F("act-order", &o.act_order, 1),
        SP_OPT_F("no-act-order", &o.act_order, 0),
        SP_OPT_X("scale-search", &o.hmse, search_fn),
        SP_OPT_F("true-sequential", &o.true_sequential, 1),
        SP_OPT_F("no-true-sequential", &o.true_sequential, 0),
        SP_OPT_X("mem-per-rank", &o.mem_per_rank, size_fn),
        SP_OPT_F("strict", &strict, 1),
        SP_OPT_X("gpu-mem", &o.gpu_mem, size_fn),
        SP_OPT_F("calibrate", &calibrate, 1),
        SP_OPT_S("calibrate-dir", &cal_dir),
        SP_OPT_S("rates", &rates),
        SP_OPT_S("save-rates", &save),
        SP_OPT_F("search", &search, 1),
        SP_OPT_I("generations", &so.generations, 0, 1 << 24),
        SP_OPT_I("offspring", &so.offspring, 1, 4096),
        SP_OPT_X("stages", &stages, list_fn),
        SP_OPT_X("survivors", &survivors, list_fn),
        SP_OPT_I("pool-windows", &so.pool_windows, 1, 1 << 24),
        SP_OPT_F("json", &json, 1),
    };
    sp_status st = sp_opts_parse("plan", tab, (int)(sizeof tab / sizeof tab[0]), argc, argv, &help,
                                 NULL, 0, NULL, err);
    if (st == SP_OK && help) {
        if (rank == 0) fputs(PLAN_USAGE, stdout);
        return SP_OK;
    }
    const int have_levels = levels.given;
    if (st == SP_OK && !model && !calibrate)
        st = sp_err_set(err, SP_EINVAL, "plan: --model is required (or --calibrate alone, to "
                        "measure this machine's rates)");
    if (st == SP_OK && strict && o.mem_per_rank <= 0 && o.gpu_mem <= 0)
        st = sp_err_set(err, SP_EINVAL, "plan: --strict needs --mem-per-rank or --gpu-mem");
    /* --bits is always stored, as in quantize: add it to --levels and sort. */
    if (st == SP_OK) {
        if (!have_levels) o.n_levels = 0;
        int found = 0;
        for (int i = 0; i < o.n_levels; i++) found |= o.levels[i] == o.bits;
        if (!found && o.n_levels >= SP_PLAN_MAX_LEVELS)
            st = sp_err_set(err, SP_EINVAL, "--levels: too many levels");
        else if (!found)
            o.levels[o.n_levels++] = o.bits;
        for (int i = 1; i < o.n_levels; i++)
            for (int k = i; k > 0 && o.levels[k] < o.levels[k - 1]; k--) {
                int t = o.levels[k];
                o.levels[k] = o.levels[k - 1];
                o.levels[k - 1] = t;
            }
        for (int i = 1; i < o.n_levels && st == SP_OK; i++)
            if (o.levels[i] == o.levels[i - 1])
                st = sp_err_set(err, SP_EINVAL, "--levels: %d appears twice", o.levels[i]);
    }
    if (st == SP_OK && search)
        st = sp_search_check_schedule("plan", so.stages, so.n_stages, so.survivors, nsurv,
                                      so.offspring, err);
    if (st == SP_OK && search && !model)
        st = sp_err_set(err, SP_EINVAL, "plan: --search needs --model (the dense model)");
    if (st == SP_OK && rank == 0 && search) {
        so.ranks = o.ranks;
        so.ctx = o.ctx;
        if (have_levels) so.n_levels = o.n_levels;
        st = plan_search_rank0(model, &so, calibrate, cal_dir, rates, json, err);
    } else if (st == SP_OK && rank == 0)
        st = plan_rank0(model, &o, calibrate, cal_dir, rates, save, json, strict, err);
    return sp_mpi_agree(comm, st, err);
}
