/* sp_model_cli.c — `eval`, `generate` and `tokenize` (see sp_model_cli.h); moved out of main.c
 * (issue 21: files under ~800 lines), each with its option table. */
#include "pipeline/sp_model_cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/sp_mpi.h"
#include "pipeline/sp_cli.h"
#include "pipeline/sp_device.h"
#include "pipeline/sp_eval.h"
#include "pipeline/sp_generate.h"
#include "pipeline/sp_opts.h"
#include "pipeline/sp_tokenize.h"

static sp_status device_fn(const char *opt, const char *val, void *dst, sp_err *err) {
    (void)opt;
    return sp_device_arg(val, dst, err);
}

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
    SP_DEVICE_USAGE
    "  --json              print one JSON object instead of the human summary\n"
    "  -h, --help          this text\n";

sp_status sp_eval_cli(MPI_Comm comm, int rank, int argc, char **argv,
                      const volatile sig_atomic_t *stop_flag, sp_err *err) {
    sp_eval_opts o = {.ctx = 0, .topk = 64};
    int json = 0, help = 0;
    const sp_opt t[] = {
        SP_OPT_S("model", &o.model_dir),        SP_OPT_S("text", &o.text_path),
        SP_OPT_I("ctx", &o.ctx, 2, 1 << 24),
        SP_OPT_L("max-windows", &o.max_windows, 1, 1L << 40),
        SP_OPT_S("save-logits", &o.save_logits),
        SP_OPT_I("topk", &o.topk, 1, 1 << 20),
        SP_OPT_S("kl-base", &o.kl_base),
        SP_OPT_I("level", &o.level, 2, 8),
        SP_OPT_S("bits-map", &o.bits_map),      SP_OPT_F("json", &json, 1),
        SP_OPT_X("device", &o.device, device_fn),
    };
    SP_FORWARD(sp_opts_parse("eval", t, (int)(sizeof t / sizeof t[0]), argc, argv, &help, NULL,
                             0, NULL, err));
    if (help) {
        if (rank == 0) fputs(EVAL_USAGE, stdout);
        return SP_OK;
    }
    SP_RETURN_IF(o.ctx == 0, err, SP_EINVAL, "eval: --ctx is required");
    o.stop_flag = stop_flag;
    sp_eval_result r;
    SP_FORWARD(sp_eval_run(comm, &o, &r, err));
    if (rank != 0) return SP_OK;
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
        sp_cli_print_json(j);
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

sp_status sp_generate_cli(MPI_Comm comm, int rank, int argc, char **argv,
                          const volatile sig_atomic_t *stop_flag, sp_err *err) {
    sp_generate_opts o = {.steps = 256, .temperature = 0.0f, .seed = 0};
    int help = 0;
    long seed = 0;
    double temp = 0.0;
    const sp_opt t[] = {
        SP_OPT_S("model", &o.model_dir),
        SP_OPT_I("steps", &o.steps, 1, 1 << 24),
        SP_OPT_D("temperature", &temp, 0, 100),
        SP_OPT_L("seed", &seed, 0, 0x7fffffffffffffffL),
        SP_OPT_S("prompt", &o.prompt),
        SP_OPT_I("level", &o.level, 2, 8),
        SP_OPT_S("bits-map", &o.bits_map),
    };
    SP_FORWARD(sp_opts_parse("generate", t, (int)(sizeof t / sizeof t[0]), argc, argv, &help,
                             NULL, 0, NULL, err));
    if (help) {
        if (rank == 0) fputs(GENERATE_USAGE, stdout);
        return SP_OK;
    }
    o.temperature = (float)temp;
    o.seed = (unsigned long long)seed;
    o.stop_flag = stop_flag;
    char *text = NULL;
    SP_FORWARD(sp_generate_run(comm, &o, &text, err));
    if (rank == 0 && text) printf("%s\n", text);
    free(text);
    return SP_OK;
}

/* ---- tokenize --------------------------------------------------------------------------- */

static const char *TOKENIZE_USAGE =
    "usage: shardpress tokenize (--model DIR | --tokenizer FILE) [--no-bos] [--ids | --pieces]\n"
    "                           (--file F | TEXT)\n"
    "\n"
    "Print what the tokenizer makes of a text, on one line: the ids separated by spaces\n"
    "(default), or the pieces. The input is F's bytes exactly, newlines included (or TEXT),\n"
    "encoded in one piece as eval and quantize encode their files; it must be UTF-8.\n"
    "\n"
    "  --model DIR       use the model's tokenizer, found as eval finds it (tokenizer.json,\n"
    "                    tokenizer.bin, tok<vocab_size>.bin)\n"
    "  --tokenizer FILE  a tokenizer.json (Hugging Face BPE; tokenizer_config.json beside it\n"
    "                    is read for BOS/EOS) or a llama2.c tokenizer.bin\n"
    "  --no-bos          do not add BOS (by default it is added when the tokenizer has one,\n"
    "                    as the model's tokenizer does)\n"
    "  --ids             print token ids (default)\n"
    "  --pieces          print the vocabulary pieces (\"\xE2\x96\x81the\", \"\xC4\xA0the\", \"<0x0A>\"), separated by\n"
    "                    spaces, escaped so that no piece contains one:\n"
    "                    \\\\ for '\\', \\s space, \\t tab, \\n LF, \\r CR, \\xHH for other control\n"
    "                    bytes and bytes that are not valid UTF-8\n"
    "  --file F          read the text from F\n"
    "  -h, --help        this text\n";

sp_status sp_tokenize_cli(MPI_Comm comm, int rank, int argc, char **argv,
                          const volatile sig_atomic_t *stop_flag, sp_err *err) {
    sp_tokenize_opts o;
    memset(&o, 0, sizeof o);
    int ids = 0, help = 0, n_pos = 0;
    const char *pos[2] = {NULL, NULL};
    const sp_opt t[] = {
        SP_OPT_S("model", &o.model_dir), SP_OPT_S("tokenizer", &o.tokenizer_path),
        SP_OPT_F("no-bos", &o.no_bos, 1), SP_OPT_F("ids", &ids, 1),
        SP_OPT_F("pieces", &o.pieces, 1), SP_OPT_S("file", &o.file),
    };
    SP_FORWARD(sp_opts_parse("tokenize", t, (int)(sizeof t / sizeof t[0]), argc, argv, &help, pos,
                             2, &n_pos, err));
    if (help) {
        if (rank == 0) fputs(TOKENIZE_USAGE, stdout);
        return SP_OK;
    }
    SP_RETURN_IF(ids && o.pieces, err, SP_EINVAL, "tokenize: give --ids or --pieces, not both");
    SP_RETURN_IF(n_pos > 1, err, SP_EINVAL, "tokenize: unexpected argument '%s' (quote a TEXT "
                 "that has spaces)", pos[1]);
    o.text = pos[0];
    o.stop_flag = stop_flag;
    /* One reader and one writer: rank 0 tokenizes and prints, the others wait for its
     * verdict, so every rank exits with the same status. */
    sp_status st = rank == 0 ? sp_tokenize_run(&o, stdout, err) : SP_OK;
    return sp_mpi_agree(comm, st, err);
}
