/* sp_exchange_cli.c — `shardpress exchange` argument parsing and report. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/exchange/sp_exchange.h"
#include "pipeline/sp_cli.h"
#include "pipeline/sp_opts.h"

static const char *USAGE =
    "usage: mpirun -n N shardpress exchange --base DIR --local 'sites/{rank}' --state D --out DIR\n"
    "           [--compressor topk:0.01+q8] [--weights uniform|data:N1,N2,..|smooth]\n"
    "           [--server-lr auto|LR] [--downlink SPEC] [--transport mpi|files:DIR]\n"
    "           [--site I --sites N] [--timeout S] [--json]\n"
    "\n"
    "One federated round of EF21 error-feedback compressed exchange of model deltas. Each rank\n"
    "is a site; v_i = local_i - base per tensor; site i sends C(s_i v_i - g_i) (s_i = 1/(n w_i);\n"
    "1 for data weights) and keeps g_i; site 0 (the server) keeps g = sum w_i g_i and writes\n"
    "base + lr*g (or, with\n"
    "--downlink, base + C(x - base) of its model x) as a model directory in the base's dtype,\n"
    "with config and tokenizer. State D (g_i, g, x, round) lives in parallel HDF5 checkpoints;\n"
    "the next round takes this round's --out as --base. A killed round is simply rerun.\n"
    "\n"
    "  --compressor SPEC   none, topk:F|N, randk:F|N[@SEED], q8, topk:..+q8, topk:..+sign,\n"
    "                      any of them +zstd (default topk:0.01+q8)\n"
    "  --downlink SPEC     compress the server's model update too (EF21-BC); default: dense\n"
    "  --weights W         uniform (EF21: the mean of the deltas), data:N1,..,Nn (the\n"
    "                      deltas weighted by data size N_i/sum N, as FedAvg), smooth (EF21-W,\n"
    "                      w_i ~ ||v_i|| of the first round, the mean; mpi transport)\n"
    "  --server-lr auto|LR the server's step on g. auto (default): per unit, EF21's step\n"
    "                      1 - sqrt(1 - a) for the contraction a the compressor achieved on\n"
    "                      the sites' residuals this round (1 without compression); LR: fixed\n"
    "  --transport T       mpi (default) or files:DIR (one file per site per round, sites may\n"
    "                      be separate jobs: --site I is this job's first site, --sites N)\n"
    "  --timeout S         files: seconds to wait for another site's file (default 60)\n"
    "  --json              one JSON object: bytes per site per direction, dense size, error\n"
    "  -h, --help          this text\n";

static void print_result(const sp_exchange_opts *o, const sp_exchange_result *r, int json) {
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "round", (double)r->round);
        cJSON_AddNumberToObject(j, "sites", r->sites);
        cJSON_AddNumberToObject(j, "site0", r->site0);
        cJSON_AddStringToObject(j, "compressor", o->compressor);
        cJSON_AddStringToObject(j, "downlink", o->downlink ? o->downlink : "none");
        cJSON_AddStringToObject(j, "transport", o->files_dir ? "files" : "mpi");
        cJSON_AddNumberToObject(j, "values", (double)r->values);
        cJSON_AddNumberToObject(j, "dense_bytes", r->dense_bytes);
        cJSON *up = cJSON_AddArrayToObject(j, "up_bytes");
        for (int s = 0; s < r->sites; s++)
            cJSON_AddItemToArray(up, r->up_bytes[s] < 0 ? cJSON_CreateNull() : cJSON_CreateNumber(r->up_bytes[s]));
        cJSON_AddNumberToObject(j, "down_bytes", r->down_bytes);
        if (o->lr_auto) cJSON_AddStringToObject(j, "server_lr", "auto");
        else cJSON_AddNumberToObject(j, "server_lr", o->lr);
        if (r->step_mean >= 0) {
            cJSON *st = cJSON_AddObjectToObject(j, "step");
            cJSON_AddNumberToObject(st, "mean", r->step_mean);
            cJSON_AddNumberToObject(st, "min", r->step_min);
            cJSON_AddNumberToObject(st, "max", r->step_max);
        } else {
            cJSON_AddNullToObject(j, "step");
        }
        cJSON *w = cJSON_AddArrayToObject(j, "weights");
        for (int s = 0; s < r->sites; s++) cJSON_AddItemToArray(w, cJSON_CreateNumber(r->weights[s]));
        if (r->rel_error >= 0) cJSON_AddNumberToObject(j, "rel_error", r->rel_error);
        else cJSON_AddNullToObject(j, "rel_error");
        cJSON_AddNumberToObject(j, "seconds", r->seconds);
        sp_cli_print_json(j);
        return;
    }
    printf("round        %lld (%d sites)\n", (long long)r->round, r->sites);
    printf("values       %lld per site (dense fp32 %.0f bytes)\n", (long long)r->values, r->dense_bytes);
    for (int s = 0; s < r->sites; s++)
        if (r->up_bytes[s] >= 0)
            printf("uplink       site %d: %.0f bytes (%.4f of dense)\n", s, r->up_bytes[s],
                   r->up_bytes[s] / r->dense_bytes);
    printf("downlink     %.0f bytes per site (%.4f of dense)\n", r->down_bytes, r->down_bytes / r->dense_bytes);
    if (r->step_mean >= 0)
        printf("step         %.4f (units: %.4f .. %.4f)%s\n", r->step_mean, r->step_min, r->step_max,
               o->lr_auto ? ", auto" : "");
    if (r->rel_error >= 0) printf("rel. error   %.6e  (||g - mean v|| / ||mean v||)\n", r->rel_error);
    printf("output       %s\n", o->out);
}

/* Option-table helpers (pipeline/sp_opts.h): values that are not one number in a range. */
static sp_status lr_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    sp_exchange_opts *o = dst;
    char *end = NULL;
    o->lr_auto = !strcmp(val, "auto");
    if (o->lr_auto) return SP_OK;
    o->lr = strtod(val, &end);
    SP_RETURN_IF(end == val || *end, err, SP_EINVAL, "%s '%s': expected auto or a number", opt, val);
    return SP_OK;
}

static sp_status timeout_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    char *end = NULL;
    double t = strtod(val, &end);
    SP_RETURN_IF(end == val || *end || !(t >= 0), err, SP_EINVAL,
                 "%s '%s': not a number of seconds", opt, val);
    *(double *)dst = t;
    return SP_OK;
}

static sp_status transport_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    const char **files_dir = dst;
    if (!strcmp(val, "mpi")) *files_dir = NULL;
    else if (!strncmp(val, "files:", 6) && val[6]) *files_dir = val + 6;
    else return sp_err_set(err, SP_EINVAL, "%s '%s': expected mpi or files:DIR", opt, val);
    return SP_OK;
}

sp_status sp_exchange_cli(MPI_Comm comm, int rank, int argc, char **argv,
                          const volatile sig_atomic_t *stop_flag, sp_err *err) {
    sp_exchange_opts o;
    sp_exchange_defaults(&o);
    int json = 0, help = 0;
    const sp_opt t[] = {
        SP_OPT_S("base", &o.base),           SP_OPT_S("local", &o.local),
        SP_OPT_S("state", &o.state),         SP_OPT_S("out", &o.out),
        SP_OPT_S("compressor", &o.compressor), SP_OPT_S("weights", &o.weights),
        SP_OPT_X("server-lr", &o, lr_fn),    SP_OPT_S("downlink", &o.downlink),
        SP_OPT_X("transport", &o.files_dir, transport_fn),
        SP_OPT_I("site", &o.site0, 0, SP_EXCHANGE_MAX_SITES - 1),
        SP_OPT_I("sites", &o.sites, 1, SP_EXCHANGE_MAX_SITES),
        SP_OPT_X("timeout", &o.timeout_s, timeout_fn), SP_OPT_F("json", &json, 1),
    };
    SP_FORWARD(sp_opts_parse("exchange", t, (int)(sizeof t / sizeof t[0]), argc, argv, &help,
                             NULL, 0, NULL, err));
    if (help) {
        if (rank == 0) fputs(USAGE, stdout);
        return SP_OK;
    }
    o.diag = json;
    o.stop_flag = stop_flag;
    /* Test hook: SIGKILL this process mid-round or after the output, before the state commit. */
    const char *k = getenv("SP_EXCHANGE_TEST_KILL");
    if (k && !strcmp(k, "mid")) o.kill_at = SP_XKILL_MID;
    if (k && !strcmp(k, "before-commit")) o.kill_at = SP_XKILL_BEFORE_COMMIT;
    sp_exchange_result *r = calloc(1, sizeof *r);
    SP_RETURN_IF(!r, err, SP_ENOMEM, "exchange: out of memory");
    sp_status st = sp_exchange_run(comm, &o, r, err);
    if (st == SP_OK && rank == 0) print_result(&o, r, json);
    free(r);
    return st;
}
