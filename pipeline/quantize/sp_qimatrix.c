/* sp_qimatrix.c — quantize --imatrix-out: llama.cpp's importance matrix from the Hessians that
 * GPTQ already accumulates (issue 11; format in docs/formats.md, "imatrix").
 *
 * llama.cpp's importance of input column i of a weight is the mean of x_i² over the calibration
 * tokens (llama-imatrix sums x_i² into <tensor>.in_sum2 and the token count into
 * <tensor>.counts; llama-quantize divides). The exact integer Hessian accumulator holds
 * A_ii = Σ x_i² / g (sp_hacc.h), so in_sum2[i] = A_ii · g and counts = N, the tokens of all
 * ranks — the same numbers on any rank count, at no extra pass. q/k/v share their input (the
 * normed hidden state), and so do gate/up; each GGUF weight gets its own copy.
 */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/quantize/sp_quantize_int.h"
#include "shards/formats/sp_gguf.h"
#include "shards/sp_safetensors.h" /* sp_shards_write_atomic */

/* Checkpointed runs keep each block's diagonals in <checkpoint_dir>/imatrix-<layer>.bin:
 *   "SPIMX001", u32 layer, u32 SP_N_HESS, i64 tokens, then per Hessian u32 n, f32 sums[n]
 * (little-endian, the machine's own byte order like the block segments). */
#define IMX_MAGIC "SPIMX001"

static int hess_dim(const sp_config *c, int h) {
    return h == SP_H_O ? c->n_heads * c->head_dim : h == SP_H_DOWN ? c->hidden_dim : c->dim;
}

static void block_path(char *buf, size_t cap, const sp_qjob *j, int layer) {
    snprintf(buf, cap, "%s/imatrix-%05d.bin", j->o->checkpoint_dir, layer);
}

sp_status sp_qimatrix_save_block(const sp_qjob *j, int layer, sp_err *err) {
    char path[4200];
    block_path(path, sizeof path, j, layer);
    uint32_t head[2] = {(uint32_t)layer, SP_N_HESS}, dims[SP_N_HESS];
    int64_t tokens = j->imx_tokens;
    const void *bufs[3 + 2 * SP_N_HESS];
    size_t lens[3 + 2 * SP_N_HESS];
    int nb = 0;
    bufs[nb] = IMX_MAGIC, lens[nb++] = 8;
    bufs[nb] = head, lens[nb++] = sizeof head;
    bufs[nb] = &tokens, lens[nb++] = sizeof tokens;
    for (int h = 0; h < SP_N_HESS; h++) {
        const float *v = j->imx ? j->imx[(size_t)layer * SP_N_HESS + (size_t)h] : NULL;
        SP_RETURN_IF(!v, err, SP_EINTERNAL, "%s: layer %d has no Hessian %d", path, layer, h);
        dims[h] = (uint32_t)hess_dim(j->c, h);
        bufs[nb] = &dims[h], lens[nb++] = 4;
        bufs[nb] = v, lens[nb++] = (size_t)dims[h] * 4;
    }
    return sp_shards_write_atomic(path, bufs, lens, nb, err);
}

/* Read a block a resumed run did not compute back into j->imx. */
static sp_status load_block(sp_qjob *j, int layer, sp_err *err) {
    char path[4200];
    block_path(path, sizeof path, j, layer);
    FILE *f = fopen(path, "rb");
    SP_RETURN_IF(!f, err, SP_ENOTFOUND, "%s: missing (the imatrix of block %d; the checkpoint "
                 "directory was written without --imatrix-out?)", path, layer);
    char magic[8];
    uint32_t head[2];
    int64_t tokens;
    sp_status st = SP_OK;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, IMX_MAGIC, 8) != 0 ||
        fread(head, 4, 2, f) != 2 || head[0] != (uint32_t)layer || head[1] != SP_N_HESS ||
        fread(&tokens, 8, 1, f) != 1)
        st = sp_err_set(err, SP_EFORMAT, "%s: not the imatrix of block %d", path, layer);
    for (int h = 0; st == SP_OK && h < SP_N_HESS; h++) {
        uint32_t n;
        float **slot = &j->imx[(size_t)layer * SP_N_HESS + (size_t)h];
        if (fread(&n, 4, 1, f) != 1 || n != (uint32_t)hess_dim(j->c, h)) {
            st = sp_err_set(err, SP_EFORMAT, "%s: Hessian %d: wrong size", path, h);
            break;
        }
        free(*slot);
        if (!(*slot = sp_malloc((size_t)n * 4, err, "imatrix"))) st = SP_ENOMEM;
        else if (fread(*slot, 4, n, f) != n) st = sp_err_set(err, SP_ETRUNC, "%s: truncated", path);
    }
    fclose(f);
    if (st == SP_OK && j->imx_tokens == 0) j->imx_tokens = tokens;
    return st;
}

sp_status sp_qimatrix_take(sp_qjob *j, int layer, int h, const sp_hacc *H, sp_err *err) {
    if (!j->imx) {
        j->imx = sp_calloc((size_t)j->c->n_layers * SP_N_HESS, sizeof *j->imx, err, "imatrix");
        if (!j->imx) return SP_ENOMEM;
    }
    float **slot = &j->imx[(size_t)layer * SP_N_HESS + (size_t)h];
    free(*slot);
    if (!(*slot = sp_malloc((size_t)H->n * sizeof **slot, err, "imatrix"))) return SP_ENOMEM;
    for (int i = 0; i < H->n; i++)
        (*slot)[i] = (float)((double)H->acc[sp_hacc_index(H->n, i, i)] * H->grid);
    j->imx_tokens = H->rows;
    return SP_OK;
}

void sp_qimatrix_free(sp_qjob *j) {
    if (j->imx)
        for (int i = 0; i < j->c->n_layers * SP_N_HESS; i++) free(j->imx[i]);
    free(j->imx);
    j->imx = NULL;
}

sp_status sp_qimatrix_write(sp_qjob *j, sp_err *err) {
    static const char *const names[SP_N_HESS][3] = {{"attn_q", "attn_k", "attn_v"},
                                                    {"attn_output", NULL, NULL},
                                                    {"ffn_gate", "ffn_up", NULL},
                                                    {"ffn_down", NULL, NULL}};
    const sp_quantize_opts *o = j->o;
    if (!j->imx && !(j->imx = sp_calloc((size_t)j->c->n_layers * SP_N_HESS, sizeof *j->imx, err,
                                         "imatrix")))
        return SP_ENOMEM;
    for (int l = 0; l < j->c->n_layers; l++)
        if (!j->imx[(size_t)l * SP_N_HESS] && o->checkpoint_dir) SP_FORWARD(load_block(j, l, err));
    sp_gguf *g;
    SP_FORWARD(sp_gguf_create(&g, o->imatrix_out, o->force, err));
    char cal[4096];
    snprintf(cal, sizeof cal, "%s", o->calib_path);
    const char *ds[1] = {basename(cal)};
    float count = (float)j->imx_tokens;
    sp_status st = sp_gguf_kv_str(g, "general.type", "imatrix", err);
    if (st == SP_OK) st = sp_gguf_kv_arr_str(g, "imatrix.datasets", ds, 1, err);
    if (st == SP_OK) st = sp_gguf_kv_u32(g, "imatrix.chunk_count", (uint32_t)o->nsamples, err);
    if (st == SP_OK) st = sp_gguf_kv_u32(g, "imatrix.chunk_size", (uint32_t)o->ctx, err);
    for (int pass = 0; pass < 2 && st == SP_OK; pass++) {
        if (pass == 1) st = sp_gguf_begin(g, err);
        for (int l = 0; l < j->c->n_layers && st == SP_OK; l++)
            for (int h = 0; h < SP_N_HESS && st == SP_OK; h++) {
                const float *v = j->imx[(size_t)l * SP_N_HESS + (size_t)h];
                int n = hess_dim(j->c, h);
                if (!v) {
                    st = sp_err_set(err, SP_EINTERNAL, "%s: layer %d has no Hessian %d",
                                    o->imatrix_out, l, h);
                    break;
                }
                for (int k = 0; k < 3 && names[h][k] && st == SP_OK; k++) {
                    if (pass == 1) {
                        st = sp_gguf_write_data(g, v, (size_t)n * 4, err);
                        if (st == SP_OK) st = sp_gguf_write_data(g, &count, 4, err);
                        continue;
                    }
                    char nm[64];
                    int64_t ne_s[2] = {n, 1}, ne_c[2] = {1, 1};
                    snprintf(nm, sizeof nm, "blk.%d.%s.weight.in_sum2", l, names[h][k]);
                    st = sp_gguf_add_tensor(g, nm, 0 /* F32 */, 2, ne_s, (size_t)n * 4, err);
                    snprintf(nm, sizeof nm, "blk.%d.%s.weight.counts", l, names[h][k]);
                    if (st == SP_OK) st = sp_gguf_add_tensor(g, nm, 0, 2, ne_c, 4, err);
                }
            }
    }
    if (st != SP_OK) {
        sp_gguf_free(g);
        return st;
    }
    return sp_gguf_finish(g, err);
}
