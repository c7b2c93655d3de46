/* llama_client.c — llama.cpp as the real client of shardpress's GGUF files (issue 11 tests).
 * Compiled by tests/mpi/test_gguf.sh against llama.cpp's headers (from the node-llama-cpp
 * source bundle) and linked with its prebuilt CPU libraries; not part of the shardpress build.
 *
 *   llama_client BINS greedy MODEL.gguf N        N greedy tokens from BOS, printed as text
 *                                                (leading space of the first piece dropped)
 *   llama_client BINS tokenize MODEL.gguf FILE   llama.cpp's ids of FILE's text (with BOS), one
 *                                                per line
 *   llama_client BINS logprobs MODEL.gguf IDS CTX NWIN OUT
 *                                                windows k < NWIN of CTX ids (IDS: one id per
 *                                                line, windows ids[k·CTX ..]): log-softmax of
 *                                                positions 0..CTX−2 as f32 [NWIN, CTX−1, V] to OUT;
 *                                                prints "ppl <value>" of the CTX−1 predictions
 *   llama_client BINS kl REF.lp TEST.lp V        mean over positions of KL(ref ‖ test) =
 *                                                Σ_v p_ref(v)·(log p_ref(v) − log p_test(v)),
 *                                                both files from logprobs (rows of V); prints
 *                                                "kl <value> positions <n>" (no model loaded)
 *   llama_client BINS dequant MODEL.gguf OUT     every tensor through ggml's to_float: records
 *                                                u32 name_len, name, u32 type, u64 n, f32[n]
 * BINS: the directory of the prebuilt libraries (ggml backends are loaded from it).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-backend.h"
#include "ggml.h"
#include "gguf.h"
#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static bool no_progress(float progress, void *user) {
    (void)progress;
    (void)user;
    return true;
}

static struct llama_model *load(const char *path) {
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.progress_callback = no_progress;
    struct llama_model *m = llama_model_load_from_file(path, mp);
    if (!m) {
        fprintf(stderr, "llama_client: llama.cpp cannot load %s\n", path);
        exit(2);
    }
    return m;
}

static struct llama_context *context(struct llama_model *m, int n_ctx) {
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = (uint32_t)n_ctx;
    cp.n_ubatch = (uint32_t)n_ctx;
    cp.n_threads = 1;
    cp.n_threads_batch = 1;
    /* fp32 everywhere: the comparison with shardpress's fp32 forward is at fp32 tolerance */
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    struct llama_context *c = llama_init_from_model(m, cp);
    if (!c) {
        fprintf(stderr, "llama_client: no context\n");
        exit(2);
    }
    return c;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int greedy(const char *path, int n) {
    struct llama_model *m = load(path);
    const struct llama_vocab *v = llama_model_get_vocab(m);
    struct llama_context *c = context(m, n + 1);
    int V = llama_vocab_n_tokens(v);
    llama_token tok = llama_vocab_bos(v);
    for (int i = 0; i < n; i++) {
        if (llama_decode(c, llama_batch_get_one(&tok, 1)) != 0) {
            fprintf(stderr, "llama_client: decode failed\n");
            return 2;
        }
        tok = argmax(llama_get_logits_ith(c, -1), V);
        char buf[256];
        int k = llama_token_to_piece(v, tok, buf, sizeof buf, i == 0 ? 1 : 0, false);
        if (k > 0) fwrite(buf, 1, (size_t)k, stdout);
    }
    printf("\n");
    llama_free(c);
    llama_model_free(m);
    return 0;
}

static char *slurp(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)*len + 1);
    if (b && fread(b, 1, (size_t)*len, f) != (size_t)*len) *len = 0;
    if (b) b[*len] = 0;
    fclose(f);
    return b;
}

static int tokenize(const char *path, const char *file) {
    struct llama_model *m = load(path);
    const struct llama_vocab *v = llama_model_get_vocab(m);
    long len = 0;
    char *text = slurp(file, &len);
    if (!text) return 2;
    int cap = (int)len + 16;
    llama_token *ids = malloc(sizeof *ids * (size_t)cap);
    int n = llama_tokenize(v, text, (int32_t)len, ids, cap, true, false);
    if (n < 0) return 2;
    for (int i = 0; i < n; i++) printf("%d\n", ids[i]);
    free(ids);
    free(text);
    llama_model_free(m);
    return 0;
}

static int logprobs(const char *path, const char *idfile, int ctx, int nwin, const char *out) {
    struct llama_model *m = load(path);
    const struct llama_vocab *v = llama_model_get_vocab(m);
    int V = llama_vocab_n_tokens(v);
    FILE *fi = fopen(idfile, "r");
    if (!fi) return 2;
    int cap = ctx * nwin, n = 0;
    int *ids = malloc(sizeof *ids * (size_t)cap);
    while (n < cap && fscanf(fi, "%d", &ids[n]) == 1) n++;
    fclose(fi);
    if (n < cap) {
        fprintf(stderr, "llama_client: %s has %d ids, need %d\n", idfile, n, cap);
        return 2;
    }
    FILE *fo = fopen(out, "wb");
    float *lp = malloc(sizeof *lp * (size_t)V);
    double nll = 0;
    for (int w = 0; w < nwin; w++) {
        struct llama_context *c = context(m, ctx);
        struct llama_batch b = llama_batch_init(ctx, 0, 1);
        for (int i = 0; i < ctx; i++) {
            b.token[i] = ids[w * ctx + i];
            b.pos[i] = i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = 1;
        }
        b.n_tokens = ctx;
        if (llama_decode(c, b) != 0) return 2;
        for (int i = 0; i + 1 < ctx; i++) {
            const float *x = llama_get_logits_ith(c, i);
            double mx = x[argmax(x, V)], s = 0;
            for (int k = 0; k < V; k++) s += exp((double)x[k] - mx);
            double lse = mx + log(s);
            for (int k = 0; k < V; k++) lp[k] = (float)((double)x[k] - lse);
            nll -= lp[ids[w * ctx + i + 1]];
            fwrite(lp, sizeof *lp, (size_t)V, fo);
        }
        llama_batch_free(b);
        llama_free(c);
    }
    fclose(fo);
    printf("ppl %.10g\n", exp(nll / ((double)nwin * (ctx - 1))));
    free(lp);
    free(ids);
    llama_model_free(m);
    return 0;
}

static int dequant(const char *path, const char *out) {
    struct ggml_context *gc = NULL;
    struct gguf_init_params p = {.no_alloc = false, .ctx = &gc};
    struct gguf_context *g = gguf_init_from_file(path, p);
    if (!g) {
        fprintf(stderr, "llama_client: gguf cannot read %s\n", path);
        return 2;
    }
    FILE *fo = fopen(out, "wb");
    for (int64_t ti = 0; ti < gguf_get_n_tensors(g); ti++) {
        struct ggml_tensor *t = ggml_get_tensor(gc, gguf_get_tensor_name(g, ti));
        int64_t n = ggml_nelements(t);
        float *y = malloc(sizeof *y * (size_t)n);
        const struct ggml_type_traits *tr = ggml_get_type_traits(t->type);
        if (t->type == GGML_TYPE_F32) memcpy(y, t->data, sizeof *y * (size_t)n);
        else if (tr->to_float) tr->to_float(t->data, y, n);
        else {
            fprintf(stderr, "llama_client: no to_float for %s\n", t->name);
            return 2;
        }
        uint32_t nl = (uint32_t)strlen(t->name), ty = (uint32_t)t->type;
        uint64_t nn = (uint64_t)n;
        fwrite(&nl, 4, 1, fo);
        fwrite(t->name, 1, nl, fo);
        fwrite(&ty, 4, 1, fo);
        fwrite(&nn, 8, 1, fo);
        fwrite(y, sizeof *y, (size_t)n, fo);
        free(y);
    }
    fclose(fo);
    gguf_free(g);
    ggml_free(gc);
    return 0;
}

static int kl(const char *ref, const char *test, int V) {
    FILE *a = fopen(ref, "rb"), *b = fopen(test, "rb");
    if (!a || !b || V < 1) return 2;
    float *x = malloc(sizeof *x * (size_t)V), *y = malloc(sizeof *y * (size_t)V);
    double sum = 0;
    long n = 0;
    while (fread(x, sizeof *x, (size_t)V, a) == (size_t)V) {
        if (fread(y, sizeof *y, (size_t)V, b) != (size_t)V) return 2;
        double s = 0;
        for (int k = 0; k < V; k++) s += exp((double)x[k]) * ((double)x[k] - (double)y[k]);
        sum += s;
        n++;
    }
    if (n == 0 || fread(y, 1, 1, b) != 0) return 2; /* both files the same length */
    printf("kl %.8g positions %ld\n", sum / (double)n, n);
    fclose(a);
    fclose(b);
    free(x);
    free(y);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: llama_client BINS greedy|tokenize|logprobs|dequant MODEL ...\n");
        return 2;
    }
    llama_log_set(quiet, NULL);
    ggml_backend_load_all_from_path(argv[1]);
    llama_backend_init();
    const char *mode = argv[2], *model = argv[3];
    if (!strcmp(mode, "kl") && argc == 6) return kl(argv[3], argv[4], atoi(argv[5]));
    if (!strcmp(mode, "greedy") && argc == 5) return greedy(model, atoi(argv[4]));
    if (!strcmp(mode, "tokenize") && argc == 5) return tokenize(model, argv[4]);
    if (!strcmp(mode, "logprobs") && argc == 8)
        return logprobs(model, argv[4], atoi(argv[5]), atoi(argv[6]), argv[7]);
    if (!strcmp(mode, "dequant") && argc == 5) return dequant(model, argv[4]);
    fprintf(stderr, "llama_client: bad arguments\n");
    return 2;
}
