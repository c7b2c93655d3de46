/* main.c — the shardpress command line. The only place that touches MPI_COMM_WORLD, prints
 * errors, and decides the exit code. Every subcommand is collective: all ranks parse the same
 * argv, run the same job, and agree on its status, so one failing rank ends them all with
 * one line on stderr (printed by rank 0) and exit code 1.
 */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <getopt.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/sp_error.h"
#include "../mpi/sp_mpi.h"
#include "sp_cli.h"
#include "sp_eval.h"
#include "sp_generate.h"

#define SP_VERSION "0.1.0"

typedef struct {
    MPI_Comm comm;
    int rank, size;
} cli_ctx;

/* ---- eval ------------------------------------------------------------------------------- */

static const char *EVAL_USAGE =
    "usage: shardpress eval --model DIR --text FILE --ctx N [options]\n"
    "\n"
    "Perplexity of a model on a text, and optionally its KL divergence to a reference run.\n"
    "The text is tokenized once with one BOS, cut into floor(tokens/ctx) windows of N tokens,\n"
    "and the N-1 next-token predictions inside each window are scored. Windows are split\n"
    "across MPI ranks; results are identical for any rank count.\n"
    "\n"
    "  --model DIR         model directory (HF safetensors, llama2.c .bin, quantized output)\n"
    "  --text FILE         evaluation text, UTF-8\n"
    "  --ctx N             window length in tokens (<= max_position_embeddings)\n"
    "  --max-windows W     evaluate at most W windows (default: all)\n"
    "  --save-logits FILE  store this model's top-K log-probs per scored position\n"
    "  --topk K            K for --save-logits (default 64)\n"
    "  --kl-base FILE      report mean KL(reference || this model) against a saved run\n"
    "  --level B           quantized models: use B bits for every module\n"
    "  --bits-map FILE     quantized models: 'module_name bits' per line\n"
    "  --json              print one JSON object instead of the human summary\n"
    "  -h, --help          this text\n";

static sp_status cmd_eval(cli_ctx *cx, int argc, char **argv, sp_err *err) {
    sp_eval_opts o = {.ctx = 0, .topk = 64};
    int json = 0;
    long v;
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"text", required_argument, 0, 't'},
        {"ctx", required_argument, 0, 'c'},   {"max-windows", required_argument, 0, 'w'},
        {"save-logits", required_argument, 0, 's'}, {"topk", required_argument, 0, 'k'},
        {"kl-base", required_argument, 0, 'b'}, {"level", required_argument, 0, 'l'},
        {"bits-map", required_argument, 0, 'M'}, {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': o.model_dir = optarg; break;
        case 't': o.text_path = optarg; break;
        case 'c': SP_FORWARD(sp_cli_int("--ctx", optarg, 2, 1 << 24, &v, err)); o.ctx = (int)v; break;
        case 'w': SP_FORWARD(sp_cli_int("--max-windows", optarg, 1, 1L << 40, &v, err)); o.max_windows = v; break;
        case 's': o.save_logits = optarg; break;
        case 'k': SP_FORWARD(sp_cli_int("--topk", optarg, 1, 1 << 20, &v, err)); o.topk = (int)v; break;
        case 'b': o.kl_base = optarg; break;
        case 'l': SP_FORWARD(sp_cli_int("--level", optarg, 2, 8, &v, err)); o.level = (int)v; break;
        case 'M': o.bits_map = optarg; break;
        case 'j': json = 1; break;
        case 'h': if (cx->rank == 0) fputs(EVAL_USAGE, stdout); return SP_OK;
        default:
            return sp_err_set(err, SP_EINVAL, "eval: unknown or incomplete option '%s' (see "
                              "shardpress eval --help)", argv[optind - 1]);
        }
    }
    SP_RETURN_IF(optind < argc, err, SP_EINVAL, "eval: unexpected argument '%s'", argv[optind]);
    SP_RETURN_IF(o.ctx == 0, err, SP_EINVAL, "eval: --ctx is required");
    sp_eval_result r;
    SP_FORWARD(sp_eval_run(cx->comm, &o, &r, err));
    if (cx->rank != 0) return SP_OK;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o.model_dir);
        cJSON_AddNumberToObject(j, "ctx", o.ctx);
        cJSON_AddNumberToObject(j, "tokens", (double)r.tokens);
        cJSON_AddNumberToObject(j, "windows", (double)r.windows);
        cJSON_AddNumberToObject(j, "scored", (double)r.scored);
        cJSON_AddNumberToObject(j, "mean_nll", r.mean_nll);
        cJSON_AddNumberToObject(j, "ppl", r.ppl);
        if (r.has_kl) cJSON_AddNumberToObject(j, "kl", r.kl);
        cJSON_AddNumberToObject(j, "seconds", r.seconds);
        cJSON_AddNumberToObject(j, "tokens_per_s", r.tokens_per_s);
        cJSON_AddNumberToObject(j, "ranks", r.ranks);
        char *s = cJSON_PrintUnformatted(j);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(j);
    } else {
        printf("model        %s\n", o.model_dir);
        printf("tokens       %zu\n", r.tokens);
        printf("windows      %zu x %d tokens\n", r.windows, o.ctx);
        printf("scored       %zu predictions\n", r.scored);
        printf("mean NLL     %.6f nats\n", r.mean_nll);
        printf("perplexity   %.4f\n", r.ppl);
        if (r.has_kl) printf("KL to base   %.6e nats/token\n", r.kl);
        printf("throughput   %.1f tokens/s on %d rank%s\n", r.tokens_per_s, r.ranks,
               r.ranks == 1 ? "" : "s");
    }
    return SP_OK;
}

/* ---- generate --------------------------------------------------------------------------- */

static const char *GENERATE_USAGE =
    "usage: shardpress generate --model DIR [--steps N] [--temperature T] [--seed S]\n"
    "                           [--prompt TEXT] [--level B] [--bits-map FILE]\n"
    "\n"
    "Generate N tokens (default 256) after BOS and the prompt, and print the decoded text.\n"
    "Temperature 0 (the default) is greedy. A correctness tool: no KV cache.\n";

static sp_status cmd_generate(cli_ctx *cx, int argc, char **argv, sp_err *err) {
    sp_generate_opts o = {.steps = 256, .temperature = 0.0f, .seed = 0};
    long v;
    double d;
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"steps", required_argument, 0, 'n'},
        {"temperature", required_argument, 0, 't'}, {"seed", required_argument, 0, 's'},
        {"prompt", required_argument, 0, 'p'}, {"level", required_argument, 0, 'l'},
        {"bits-map", required_argument, 0, 'M'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': o.model_dir = optarg; break;
        case 'n': SP_FORWARD(sp_cli_int("--steps", optarg, 1, 1 << 24, &v, err)); o.steps = (int)v; break;
        case 't': SP_FORWARD(sp_cli_double("--temperature", optarg, 0, 100, &d, err)); o.temperature = (float)d; break;
        case 's': SP_FORWARD(sp_cli_int("--seed", optarg, 0, 0x7fffffffffffffffL, &v, err)); o.seed = (unsigned long long)v; break;
        case 'p': o.prompt = optarg; break;
        case 'l': SP_FORWARD(sp_cli_int("--level", optarg, 2, 8, &v, err)); o.level = (int)v; break;
        case 'M': o.bits_map = optarg; break;
        case 'h': if (cx->rank == 0) fputs(GENERATE_USAGE, stdout); return SP_OK;
        default:
            return sp_err_set(err, SP_EINVAL, "generate: unknown or incomplete option '%s' (see "
                              "shardpress generate --help)", argv[optind - 1]);
        }
    }
    SP_RETURN_IF(optind < argc, err, SP_EINVAL, "generate: unexpected argument '%s'", argv[optind]);
    char *text = NULL;
    SP_FORWARD(sp_generate_run(cx->comm, &o, &text, err));
    if (cx->rank == 0 && text) printf("%s\n", text);
    free(text);
    return SP_OK;
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
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *f) {
    fprintf(f, "usage: [mpirun -n N | srun --mpi=pmix] shardpress <command> [options]\n\n"
               "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\n'shardpress <command> --help' describes each command.\n");
}

/* OpenBLAS threads: unless the user chose (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS), share the
 * node's cores among the ranks on it, so N ranks do not each start one thread per core. */
static void configure_blas_threads(MPI_Comm comm) {
    if (getenv("OPENBLAS_NUM_THREADS") || getenv("OMP_NUM_THREADS")) return;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int local = sp_mpi_local_size(comm);
    long t = cores / (local > 0 ? local : 1);
    openblas_set_num_threads((int)(t > 0 ? t : 1));
}

int main(int argc, char **argv) {
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
            configure_blas_threads(cx.comm);
            optind = 1;
            st = cmd->run(&cx, argc - 1, argv + 1, &err);
        }
    }
    if (st != SP_OK && cx.rank == 0) fprintf(stderr, "shardpress: error: %s\n", err.msg);
    fflush(stdout);
    MPI_Finalize();
    return st == SP_OK ? 0 : 1;
}
