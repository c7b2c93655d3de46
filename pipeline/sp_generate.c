/* sp_generate.c — see sp_generate.h. */
#include "pipeline/sp_generate.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/sp_stop.h"
#include "kernels/sp_forward.h"
#include "mpi/sp_mpi.h"
#include "shards/sp_model.h"
#include "shards/tok/sp_tokenizer.h"
#include "pipeline/sp_eval.h"

/* xorshift64* — small, seedable, and identical on every platform. */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static float rng_uniform(uint64_t *s) { return (float)(rng_next(s) >> 40) / 16777216.0f; }

/* Greedy: argmax, lowest id on ties. */
static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* Sample from softmax(logits / temperature); logits is overwritten. */
static int sample(float *logits, int n, float temperature, uint64_t *rng) {
    float mx = logits[argmax(logits, n)];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        logits[i] = expf((logits[i] - mx) / temperature);
        sum += logits[i];
    }
    double u = rng_uniform(rng) * sum, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += logits[i];
        if (u < acc) return i;
    }
    return n - 1;
}

/* logits [V] of the last position of ids [T]: every block is converted and applied in turn. */
static sp_status next_logits(const sp_model *m, const int32_t *ids, int T, float *x,
                             sp_block_weights *w, sp_block_scratch *s, const float *norm,
                             const float *head, float *xn, float *logits, sp_err *err) {
    const sp_config *c = sp_model_config(m);
    SP_FORWARD(sp_model_embed(m, ids, (size_t)T, x, err));
    for (int l = 0; l < c->n_layers; l++) {
        SP_FORWARD(sp_model_load_block(m, l, w, err));
        sp_block_forward(x, w, c, T, s);
    }
    sp_head_forward(logits, xn, x + (size_t)(T - 1) * c->dim, norm, head, c, 1, c->vocab_size);
    return SP_OK;
}

static sp_status generate_rank0(const sp_generate_opts *o, char **text, sp_err *err) {
    sp_model *m = NULL;
    sp_tokenizer *tok = NULL;
    int32_t *ids = NULL, *prompt = NULL;
    float *x = NULL, *norm = NULL, *head = NULL, *xn = NULL, *logits = NULL;
    sp_block_weights w;
    sp_block_scratch s;
    memset(&w, 0, sizeof w);
    memset(&s, 0, sizeof s);
    size_t n_prompt = 0;

    sp_status st = sp_model_open(&m, o->model_dir, err);
    if (st) return st;
    const sp_config *c = sp_model_config(m);
    st = sp_eval_select_levels(m, o->level, o->bits_map, err);
    if (st == SP_OK) st = sp_tokenizer_open_dir(&tok, sp_model_dir(m), c->vocab_size, err);
    if (st == SP_OK) {
        const char *p = o->prompt ? o->prompt : "";
        st = sp_tokenizer_encode(tok, p, strlen(p), 1, &prompt, &n_prompt, err);
    }
    int total = (int)n_prompt + o->steps;
    if (st == SP_OK && total > c->max_seq_len)
        st = sp_err_set(err, SP_EINVAL, "generate: prompt (%zu tokens) + --steps %d exceeds the "
                        "model's maximum of %d positions", n_prompt, o->steps, c->max_seq_len);
    size_t D = (size_t)c->dim, V = (size_t)c->vocab_size;
    if (st == SP_OK) {
        ids = sp_malloc((size_t)total * sizeof *ids, err, "token ids");
        x = sp_malloc((size_t)total * D * sizeof *x, err, "hidden states");
        norm = sp_malloc(D * sizeof *norm, err, "final norm");
        head = sp_malloc(V * D * sizeof *head, err, "output head");
        xn = sp_malloc(D * sizeof *xn, err, "normed");
        logits = sp_malloc(V * sizeof *logits, err, "logits");
        if (!ids || !x || !norm || !head || !xn || !logits) st = SP_ENOMEM;
    }
    if (st == SP_OK) st = sp_block_weights_alloc(&w, c, err);
    if (st == SP_OK) st = sp_block_scratch_alloc(&s, c, total, err);
    if (st == SP_OK) st = sp_model_read_final_norm(m, norm, err);
    if (st == SP_OK) st = sp_model_read_head_rows(m, 0, (int64_t)V, head, err);
    if (st) goto done;

    memcpy(ids, prompt, n_prompt * sizeof *ids);
    uint64_t rng = o->seed ? o->seed : 0x9E3779B97F4A7C15ull;
    int T = (int)n_prompt;
    for (int step = 0; step < o->steps && st == SP_OK; step++) {
        st = next_logits(m, ids, T, x, &w, &s, norm, head, xn, logits, err);
        if (st == SP_OK) st = sp_stop_check(o->stop_flag, "generate", err);
        if (st) break;
        ids[T++] = o->temperature <= 0.0f ? argmax(logits, (int)V)
                                          : sample(logits, (int)V, o->temperature, &rng);
    }
    if (st == SP_OK) st = sp_tokenizer_decode(tok, ids, (size_t)T, text, NULL, err);
done:
    sp_block_scratch_free(&s);
    sp_block_weights_free(&w);
    free(ids);
    free(prompt);
    free(x);
    free(norm);
    free(head);
    free(xn);
    free(logits);
    sp_tokenizer_free(tok);
    sp_model_close(m);
    return st;
}

sp_status sp_generate_run(MPI_Comm comm, const sp_generate_opts *o, char **text, sp_err *err) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    *text = NULL;
    sp_status st = SP_OK;
    if (!o->model_dir) st = sp_err_set(err, SP_EINVAL, "generate: --model is required");
    else if (o->steps < 1) st = sp_err_set(err, SP_EINVAL, "generate: --steps must be >= 1");
    else if (o->temperature < 0.0f || !isfinite(o->temperature))
        st = sp_err_set(err, SP_EINVAL, "generate: --temperature must be >= 0");
    else if (o->prompt) {
        /* the same rule, and the same message shape, as tokenize TEXT and eval's files */
        size_t n = strlen(o->prompt), bad = sp_text_utf8_valid_len(o->prompt, n);
        if (bad < n)
            st = sp_err_set(err, SP_EFORMAT, "generate: --prompt is not valid UTF-8 at byte "
                            "offset %zu (byte 0x%02X)", bad, (unsigned)(unsigned char)o->prompt[bad]);
    }
    if (st == SP_OK && rank == 0) st = generate_rank0(o, text, err);
    return sp_mpi_agree(comm, st, err);
}
