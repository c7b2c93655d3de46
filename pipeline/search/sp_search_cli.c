/* sp_search_cli.c — the command line of `shardpress search` (main.c dispatches here). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/sp_mpi.h"
#include "pipeline/sp_device.h"
#include "pipeline/search/sp_search.h"
#include "pipeline/search/sp_search_cli.h"
#include "pipeline/search/sp_search_gguf.h"
#include "shards/formats/sp_gguf_read.h"
#include "pipeline/sp_cli.h"
#include "pipeline/sp_opts.h"

static const char *SEARCH_USAGE =
    "usage: mpirun -n N shardpress search --model QDIR --calib FILE --target-bits B --out MAP\n"
    "       mpirun -n N shardpress search --model QDIR --calib FILE --match-gguf F.gguf --out MAP\n"
    "           [--method evolution|sensitivity] [--generations 150] [--offspring 128]\n"
    "           [--stages 2048,16384,131072] [--survivors 16,4,1] [--ctx N]\n"
    "           [--init sensitivity|uniform] [--sensitivity FILE]\n"
    "           [--sensitivity-tokens N] [--screen F] [--max-evals N]\n"
    "           [--groups size|name|none] [--seed S] [--dense DIR]\n"
    "           [--topk 64] [--checkpoint-dir D] [--json]\n"
    "\n"
    "Choose a bit width per linear module under a global budget (EvoPress evolutionary search,\n"
    "fitness = KL(dense || candidate) per token on calibration windows; or the allocation that\n"
    "minimises a measured per-module KL sensitivity table). QDIR is the output of 'shardpress quantize --levels ...'; the dense\n"
    "model is found through QDIR/source.json, or given with --dense.\n"
    "\n"
    "  --target-bits B     average STORED bits per quantized weight over all linear modules:\n"
    "                      codes + fp16 scale + zero per group as in the GPTQ export (GGUF\n"
    "                      levels: the type's blocks, e.g. Q4_K 4.5). The\n"
    "                      uniform levels' averages are printed (and in --json) to pick from.\n"
    "                      uX = uniform X-bit's average (interpolated between stored levels:\n"
    "                      u2.5 is halfway between uniform 2- and 3-bit). Several, comma-\n"
    "                      separated (u2.5,u3,u3.5): one map per target, MAP.<target as\n"
    "                      written> (map.txt.u3), sharing the dense reference and the table\n"
    "  --match-gguf F      the budget is the bytes of F's block linears (F a llama.cpp GGUF of\n"
    "                      the same model, e.g. its Q4_K_M), and every level costs the bytes\n"
    "                      'export --format gguf' writes for it: export the map with\n"
    "                      --match-gguf F too, and the file is no bigger than F\n"
    "  --out MAP           the bits map ('module bits' lines, read by eval/generate/export\n"
    "                      --bits-map); also MAP.evopress.txt, MAP.svg, MAP.history.json, and\n"
    "                      MAP.sensitivity.json when the table is measured\n"
    "  --method M          evolution (default); sensitivity: measure ΔKL(module, level) with\n"
    "                      one module quantized at a time, then the exact allocation that\n"
    "                      minimises its sum under the budget (seconds per extra target)\n"
    "  --sensitivity FILE  reuse a MAP.sensitivity.json (same container and dense model)\n"
    "  --sensitivity-tokens N  tokens the table is measured on (default: the first stage's)\n"
    "  --generations G     generations of evolution (default 150)\n"
    "  --offspring K       children per generation (default 128)\n"
    "  --stages T1,T2,..   tokens scored per selection stage (default 2048,16384,131072);\n"
    "                      fresh random calibration windows at every stage and generation\n"
    "  --survivors S1,..   candidates kept after each stage (default 16,4,1)\n"
    "  --ctx N             window length (default: min(2048, max_position_embeddings))\n"
    "  --init I            sensitivity (default: start from the --method sensitivity map) or\n"
    "                      uniform (random fills when no uniform level meets B)\n"
    "  --screen F          make F x offspring children a generation and evaluate only the\n"
    "                      best offspring by an additive KL model over (module, level) that\n"
    "                      starts from the table and is refitted on every candidate measured\n"
    "                      (default 1: plain EvoPress; the line shows predicted vs measured)\n"
    "  --max-evals N       layer-evaluation budget, never exceeded: a generation starts only\n"
    "                      if its worst case (no prefix reuse) still fits (the table's\n"
    "                      evaluations included; counted as on one rank: same on any count)\n"
    "  --groups G          mutation groups: size (equal-shaped modules, default), name (same\n"
    "                      module kind), none (raise one module, lower others until it fits)\n"
    "  --seed S            seed of mutations and window draws (default 0)\n"
    "  --dense DIR         the dense model (default: QDIR/source.json)\n"
    "  --topk K            top-K of the dense reference (default 64)\n"
    "  --checkpoint-dir D  checkpoint every generation; SIGUSR1/SIGTERM checkpoint and exit 3;\n"
    "                      'shardpress resume D' finishes with the same MAP\n"
    SP_DEVICE_USAGE
    "  --json              one JSON object on stdout (progress lines go to stderr)\n";

static sp_status parse_stage_list(const char *opt, const char *val, int *out, int *n, sp_err *err) {
    return sp_cli_int_list(opt, val, 1, 1L << 30, out, SP_SEARCH_MAX_STAGES, n, err);
}

void sp_search_print_result(int rank, const sp_search_opts *o, const sp_search_result *r, int json) {
    if (rank != 0) return;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "out", o->out_map);
        cJSON_AddStringToObject(j, "method", sp_search_method_name(o->method));
        cJSON_AddNumberToObject(j, "target_bits", r->target_bits);
        cJSON_AddNumberToObject(j, "avg_bits", r->avg_bits);
        cJSON_AddNumberToObject(j, "fitness_kl", r->fitness_kl);
        cJSON_AddNumberToObject(j, "generations", r->generations);
        cJSON_AddNumberToObject(j, "start_generation", r->start_generation);
        cJSON_AddNumberToObject(j, "accepted", r->accepted);
        cJSON_AddBoolToObject(j, "uniform_start", r->uniform_start);
        cJSON_AddNumberToObject(j, "layer_evaluations", (double)r->layer_evals);
        cJSON_AddNumberToObject(j, "layer_evaluations_full", (double)r->layer_evals_full);
        cJSON_AddNumberToObject(j, "layer_evaluations_saved",
                                (double)(r->layer_evals_full - r->layer_evals));
        cJSON_AddNumberToObject(j, "seconds", r->seconds);
        cJSON_AddNumberToObject(j, "ranks", r->ranks);
        cJSON_AddNumberToObject(j, "ctx", r->ctx);
        cJSON_AddNumberToObject(j, "pool_windows", r->pool_windows);
        cJSON_AddNumberToObject(j, "reference_windows", r->reference_windows);
        cJSON_AddNumberToObject(j, "checkpoints", r->checkpoints);
        cJSON_AddNumberToObject(j, "peak_rss_mb_max", r->peak_rss_mb_max);
        cJSON *ta = cJSON_AddArrayToObject(j, "targets");
        for (int i = 0; i < r->n_targets; i++) {
            cJSON *t = cJSON_CreateObject();
            cJSON_AddStringToObject(t, "out", r->per[i].out);
            cJSON_AddNumberToObject(t, "target_bits", r->per[i].target_bits);
            cJSON_AddNumberToObject(t, "avg_bits", r->per[i].avg_bits);
            cJSON_AddNumberToObject(t, "fitness_kl", r->per[i].fitness_kl);
            cJSON_AddNumberToObject(t, "layer_evaluations", (double)r->per[i].layer_evals);
            cJSON_AddItemToArray(ta, t);
        }
        if (r->sens_measured || r->sens_loaded) {
            cJSON *se = cJSON_AddObjectToObject(j, "sensitivity");
            cJSON_AddBoolToObject(se, "measured", r->sens_measured);
            cJSON_AddNumberToObject(se, "windows", r->sens_windows);
            cJSON_AddNumberToObject(se, "layer_evaluations", (double)r->sens_evals);
            cJSON_AddNumberToObject(se, "layer_evaluations_full", (double)r->sens_evals_full);
            cJSON_AddNumberToObject(se, "seconds", r->sens_seconds);
            cJSON_AddBoolToObject(se, "exact_allocation", r->sens_exact);
        }
        cJSON *u = cJSON_AddObjectToObject(j, "uniform_avg_bits");
        for (int k = 0; k < r->n_levels; k++) {
            char key[8];
            snprintf(key, sizeof key, "%d", r->levels[k]);
            cJSON_AddNumberToObject(u, key, r->uniform_avg[k]);
        }
        char *s = cJSON_PrintUnformatted(j);
        if (s) printf("%s\n", s);
        free(s);
        cJSON_Delete(j);
        return;
    }
    printf("uniform      ");
    for (int k = 0; k < r->n_levels; k++)
        printf("%s%d-bit %.6f", k ? ", " : "", r->levels[k], r->uniform_avg[k]);
    printf(" stored bits/weight\n");
    if (r->sens_measured)
        printf("sensitivity  %d modules x %d levels on %d windows: %lld layer evaluations (full "
               "re-runs: %lld), %.2f s\n", r->n_modules,
               r->n_levels, r->sens_windows, (long long)r->sens_evals,
               (long long)r->sens_evals_full, r->sens_seconds);
    else if (r->sens_loaded)
        printf("sensitivity  read from %s\n", o->sensitivity_file ? o->sensitivity_file : "the checkpoint");
    if (r->n_targets > 1) {
        printf("%-28s %10s %12s %12s\n", "map", "target", "stored bits", "KL");
        for (int i = 0; i < r->n_targets; i++)
            printf("%-28s %10.6f %12.6f %12.6f\n", r->per[i].out, r->per[i].target_bits,
                   r->per[i].avg_bits, r->per[i].fitness_kl);
        printf("(%s; KL per token on each map's last-stage windows)\n",
               sp_search_method_name(o->method));
    } else {
        printf("map          %s (%s): %.6f bits/weight for target %.6f\n", o->out_map,
               sp_search_method_name(o->method), r->avg_bits, r->target_bits);
        printf("fitness      KL %.6f per token on the last stage's windows\n", r->fitness_kl);
    }
    printf("generations  %d (%d accepted), layer evaluations %lld (full re-runs: %lld, %.2fx)\n",
           r->generations, r->accepted, (long long)r->layer_evals, (long long)r->layer_evals_full,
           r->layer_evals > 0 ? (double)r->layer_evals_full / (double)r->layer_evals : 0.0);
    printf("time         %.2f s on %d rank%s, peak RSS %.1f MB max\n", r->seconds, r->ranks,
           r->ranks == 1 ? "" : "s", r->peak_rss_mb_max);
}

static const char *tname(int t) {
    const char *n = NULL;
    sp_gguf_type_traits(t, NULL, NULL, &n);
    return n ? n : "?";
}

/* --match-gguf: the budget from a llama.cpp file of the model (every rank reads its header:
 * the same bytes give the same target everywhere). */
static sp_status match_gguf(int rank, const char *path, sp_search_opts *o, sp_gguf_match *m,
                            int json, sp_err *err) {
    SP_RETURN_IF(o->target_bits > 0 || o->target_spec, err, SP_EINVAL, "search: give --target-bits or --match-gguf, "
                 "not both");
    SP_RETURN_IF(!o->ev.qdir, err, SP_EINVAL, "search: --model is required");
    char cp[4200];
    snprintf(cp, sizeof cp, "%s/config.json", o->ev.qdir);
    sp_config cfg;
    SP_FORWARD(sp_config_load_json(&cfg, cp, err));
    SP_FORWARD(sp_gguf_match_read(path, &cfg, m, err));
    o->target_bits = m->target_bits;
    o->ev.gguf_costs = 1;
    if (rank == 0)
        fprintf(json ? stderr : stdout, "match-gguf   %s: %llu bytes, block linears %llu bytes "
                "(%s) = %.6f bits/weight; token_embd %s, output %s\n", path,
                (unsigned long long)m->file_bytes, (unsigned long long)m->block_bytes, m->types,
                m->target_bits, tname(m->embed_type), m->output_type < 0 ? "(tied)" : tname(m->output_type));
    return SP_OK;
}

/* Option-table helpers (pipeline/sp_opts.h): the values that are names or lists. */
static sp_status target_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    sp_search_opts *o = dst;
    if (strchr(val, ',') || val[0] == 'u') {
        o->target_spec = val; /* resolved against the container's levels */
        return SP_OK;
    }
    double d = 0;
    SP_FORWARD(sp_cli_double(opt, val, 1.0, 64.0, &d, err));
    o->target_bits = d;
    o->target_spec = NULL;
    return SP_OK;
}

static sp_status method_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    (void)opt;
    sp_search_opts *o = dst;
    SP_RETURN_IF(!strcmp(val, "greedy"), err, SP_EINVAL, "search: --method greedy was removed (it "
                 "never beat uniform); --method sensitivity is the cheap method");
    if (!strcmp(val, "sensitivity")) o->method = SP_SEARCH_SENSITIVITY;
    else if (!strcmp(val, "evolution") || !strcmp(val, "evopress")) o->method = SP_SEARCH_EVO;
    else return sp_err_set(err, SP_EINVAL, "search: --method must be evolution or sensitivity");
    return SP_OK;
}

static sp_status init_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    (void)opt;
    sp_search_opts *o = dst;
    if (!strcmp(val, "uniform")) o->init = SP_SEARCH_INIT_UNIFORM;
    else if (!strcmp(val, "sensitivity")) o->init = SP_SEARCH_INIT_SENSITIVITY;
    else return sp_err_set(err, SP_EINVAL, "search: --init must be sensitivity or uniform");
    return SP_OK;
}

static sp_status groups_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    (void)opt;
    sp_search_opts *o = dst;
    if (!strcmp(val, "size")) o->ev.group_by = SP_SGROUPS_SIZE;
    else if (!strcmp(val, "name")) o->ev.group_by = SP_SGROUPS_NAME;
    else if (!strcmp(val, "none")) o->ev.group_by = SP_SGROUPS_NONE;
    else return sp_err_set(err, SP_EINVAL, "search: --groups must be size, name or none");
    return SP_OK;
}

typedef struct {
    int *v, *n, given;
} stage_list;

static sp_status stages_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    stage_list *l = dst;
    l->given = 1;
    return parse_stage_list(opt, val, l->v, l->n, err);
}

static sp_status device_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    (void)opt;
    return sp_device_arg(val, dst, err);
}

sp_status sp_search_cli(MPI_Comm comm, int rank, int argc, char **argv,
                        volatile sig_atomic_t *stop_flag, sp_err *err) {
    sp_search_opts o;
    sp_search_defaults(&o);
    o.stop_flag = stop_flag;
    int json = 0, nsurv = 3, help = 0;
    const char *match = NULL;
    long seed = -1, max_evals = -1;
    stage_list stages = {o.stages, &o.n_stages, 0}, surv = {o.survivors, &nsurv, 0};
    const sp_opt t[] = {
        SP_OPT_S("model", &o.ev.qdir),          SP_OPT_S("calib", &o.ev.calib_path),
        SP_OPT_X("target-bits", &o, target_fn), SP_OPT_S("out", &o.out_map),
        SP_OPT_X("method", &o, method_fn),
        SP_OPT_I("generations", &o.generations, 0, 1 << 24),
        SP_OPT_I("offspring", &o.offspring, 1, 4096),
        SP_OPT_X("stages", &stages, stages_fn), SP_OPT_X("survivors", &surv, stages_fn),
        SP_OPT_I("ctx", &o.ev.ctx, 2, 1 << 24),
        SP_OPT_X("init", &o, init_fn),          SP_OPT_X("groups", &o, groups_fn),
        SP_OPT_L("seed", &seed, 0, 1L << 62),   SP_OPT_S("dense", &o.ev.dense_dir),
        SP_OPT_I("topk", &o.ev.topk, 1, 1 << 16), SP_OPT_S("checkpoint-dir", &o.checkpoint_dir),
        SP_OPT_S("match-gguf", &match),         SP_OPT_F("json", &json, 1),
        SP_OPT_S("sensitivity", &o.sensitivity_file),
        SP_OPT_I("screen", &o.screen, 1, 64),
        SP_OPT_L("max-evals", &max_evals, 1, 1L << 62),
        SP_OPT_I("sensitivity-tokens", &o.sensitivity_tokens, 1, 1 << 30),
        SP_OPT_X("device", &o.ev.device, device_fn),
    };
    SP_FORWARD(sp_opts_parse("search", t, (int)(sizeof t / sizeof t[0]), argc, argv, &help,
                             NULL, 0, NULL, err));
    if (help) {
        if (rank == 0) fputs(SEARCH_USAGE, stdout);
        return SP_OK;
    }
    const int have_surv = surv.given;
    if (seed >= 0) o.seed = (uint64_t)seed;
    if (max_evals > 0) o.max_evals = max_evals;
    SP_RETURN_IF(!have_surv && o.n_stages != 3, err, SP_EINVAL, "search: give --survivors with "
                 "one value per stage (%d stages)", o.n_stages);
    if (have_surv) /* the same rules as plan --search, before any rank reads a file */
        SP_FORWARD(sp_search_check_schedule("search", o.stages, o.n_stages, o.survivors, nsurv,
                                            o.offspring, err));
    o.progress_to_stderr = json;
    sp_gguf_match gm;
    if (match) SP_FORWARD(match_gguf(rank, match, &o, &gm, json, err));
    sp_search_result r;
    sp_status st = sp_search_run(comm, &o, &r, err);
    if (st == SP_OK) sp_search_print_result(rank, &o, &r, json);
    return st;
}
