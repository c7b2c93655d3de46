/* gguf_check.c — compare ggml's dequantization of an exported GGUF (the dump written by
 * `llama_client BINS dequant`) with shardpress's weights, bit for bit (issue 11 tests).
 *
 *   gguf_check MODEL DUMP [--exact] [--bits-map MAP] [--side-search] [--dense DIR]
 *
 * For every tensor of the dump, shardpress's fp32 weights of the matching HF tensor are read
 * through sp_model (a dense model, or a container at its selected levels / MAP), with the q/k
 * rows permuted as the export does. Then:
 *   --exact and a linear module: ggml's values must equal these weights exactly (the export
 *                 copied GPTQ's codes and scales into the GGUF type);
 *   otherwise:   ggml's values must equal sp_gtype_dequant_row(sp_gtype_quantize_row(w)) of the
 *                 tensor's type, i.e. our quantizer's choice read back through ggml's own
 *                 to_float (checks our block layouts and our dequantizer against ggml's).
 *   --side-search: token_embd/output through sp_gtype_quantize_row_search instead (what
 *                 export --match-gguf writes for them).
 *   --dense DIR:  linear tensors the dump holds as F32/F16 are compared with DIR's (the
 *                 original model's) weights in that type instead (export --dense-from).
 * Prints one line per tensor type and "ok: N tensors" or the first mismatch (exit 1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sp_gtype.h"
#include "shards/formats/sp_gguf_export.h"
#include "pipeline/sp_cli.h"
#include "shards/sp_model.h"

static int die(const char *m) {
    fprintf(stderr, "gguf_check: %s\n", m);
    return 1;
}

/* The HF name whose llama.cpp name is gg (search over the model's tensor names). */
static int hf_of(const sp_config *c, const char *gg, char *hf, size_t cap) {
    static const char *const per[] = {
        "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
        "self_attn.v_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.bias",
        "self_attn.v_proj.bias", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
        "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"};
    static const char *const top[] = {"model.embed_tokens.weight", "model.norm.weight",
                                      "lm_head.weight"};
    char g[64];
    for (int i = 0; i < 3; i++)
        if (!sp_gguf_tensor_name(top[i], g, sizeof g) && !strcmp(g, gg))
            return snprintf(hf, cap, "%s", top[i]) > 0;
    for (int l = 0; l < c->n_layers; l++)
        for (size_t k = 0; k < sizeof per / sizeof per[0]; k++) {
            snprintf(hf, cap, "model.layers.%d.%s", l, per[k]);
            if (!sp_gguf_tensor_name(hf, g, sizeof g) && !strcmp(g, gg)) return 1;
        }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) return die("usage: gguf_check MODEL DUMP [--exact] [--bits-map MAP]");
    int exact = 0, side = 0;
    const char *map = NULL, *dense = NULL;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--exact")) exact = 1;
        else if (!strcmp(argv[i], "--side-search")) side = 1;
        else if (!strcmp(argv[i], "--bits-map") && i + 1 < argc) map = argv[++i];
        else if (!strcmp(argv[i], "--dense") && i + 1 < argc) dense = argv[++i];
        else return die("bad argument");
    }
    sp_err err;
    sp_model *m, *dm = NULL;
    if (sp_model_open(&m, argv[1], &err)) return die(err.msg);
    if (dense && sp_model_open(&dm, dense, &err)) return die(err.msg);
    if (map) { /* the CLI's own reader: '#' comments (a search map's header), errors */
        sp_bits_map bm;
        if (sp_bits_map_read(map, &bm, &err)) return sp_bits_map_free(&bm), die(err.msg);
        for (int i = 0; i < bm.n; i++)
            if (sp_model_select_bits(m, bm.names[i], bm.bits[i], &err)) return die(err.msg);
        sp_bits_map_free(&bm);
    }
    const sp_config *c = sp_model_config(m);
    FILE *f = fopen(argv[2], "rb");
    if (!f) return die("cannot open the dump");
    int n = 0, counts[64] = {0}, exact_n = 0, dense_n = 0;
    uint32_t nl, type;
    uint64_t ne;
    while (fread(&nl, 4, 1, f) == 1) {
        char gg[128] = {0}, hf[256];
        if (nl >= sizeof gg || fread(gg, 1, nl, f) != nl || fread(&type, 4, 1, f) != 1 ||
            fread(&ne, 8, 1, f) != 1)
            return die("truncated dump");
        float *y = malloc(ne * 4), *w = malloc(ne * 4), *ref = malloc(ne * 4);
        if (!y || !w || !ref || fread(y, 4, ne, f) != ne) return die("truncated dump");
        if (!strcmp(gg, "rope_freqs.weight")) goto next;
        if (!hf_of(c, gg, hf, sizeof hf)) return die(gg);
        sp_tensor_desc d;
        if (sp_model_tensor_desc(m, hf, &d, &err)) return die(err.msg);
        int64_t rows = d.ndim == 2 ? d.shape[0] : 1, cols = d.ndim == 2 ? d.shape[1] : d.shape[0];
        if ((uint64_t)(rows * cols) != ne) return die("element count differs");
        int lin = strstr(hf, "_proj.weight") != NULL;
        /* --dense: float linear tensors (export --dense-from) against the original weights */
        int from_dense = dm && lin && (type == SP_GT_F32 || type == SP_GT_F16);
        dense_n += from_dense;
        if (sp_model_read_rows(from_dense ? dm : m, hf, 0, rows, ref, &err)) return die(err.msg);
        int perm = sp_gguf_permutes_qk(c) && (strstr(hf, "q_proj.weight") || strstr(hf, "k_proj.weight"));
        for (int64_t r = 0; r < rows; r++) {
            int64_t s = perm ? sp_gguf_qk_src_row(r, c->head_dim) : r;
            memcpy(w + r * cols, ref + s * cols, (size_t)cols * 4);
        }
        if (exact && lin && type != SP_GT_F32 && type != SP_GT_F16) {
            exact_n++;
        } else {
            size_t rb = sp_gtype_row_bytes((int)type, cols);
            void *blk = malloc(rb);
            for (int64_t r = 0; r < rows; r++) {
                sp_status qs = side && !lin
                    ? sp_gtype_quantize_row_search((int)type, w + r * cols, cols, NULL, blk, &err)
                    : sp_gtype_quantize_row((int)type, w + r * cols, cols, blk, &err);
                if (qs ||
                    sp_gtype_dequant_row((int)type, blk, cols, w + r * cols, &err))
                    return die(err.msg);
            }
            free(blk);
        }
        if (memcmp(w, y, ne * 4) != 0) {
            for (uint64_t i = 0; i < ne; i++)
                if (memcmp(&w[i], &y[i], 4)) {
                    fprintf(stderr, "gguf_check: %s (%s, type %s): element %llu: ggml %.9g, "
                            "shardpress %.9g\n", gg, hf, sp_gtype_name((int)type),
                            (unsigned long long)i, (double)y[i], (double)w[i]);
                    return 1;
                }
        }
        if (type < 64) counts[type]++;
    next:
        free(y);
        free(w);
        free(ref);
        n++;
    }
    fclose(f);
    for (int t = 0; t < 64; t++)
        if (counts[t]) printf("  %-5s %d tensors bitwise equal\n", sp_gtype_name(t), counts[t]);
    printf("ok: %d tensors (%d exact GPTQ copies, %d from the dense model)\n", n, exact_n, dense_n);
    sp_model_close(m);
    return 0;
}
