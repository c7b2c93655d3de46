/* sp_qweights.c — the weight CRCs of a run (see "weight CRCs" in sp_qrun.h).
 *
 * Why per tensor and of the values as read: a changed byte anywhere in a weight a job used must
 * stop a resume (or a search against that dense model) before anything is written, and the
 * message must say which tensor. Reading is what the job does anyway, so the CRC is taken from
 * the fp32 buffer it already has (zlib crc32, a dependency already); only resume re-reads, and
 * only the blocks already done, spread over the ranks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/sp_mpi.h"
#include "pipeline/quantize/sp_qrun.h"

sp_status sp_qrun_global_crcs(const sp_model *m, int64_t g[SP_GLOBAL_TENSORS], sp_err *err) {
    const char *names[SP_GLOBAL_TENSORS];
    int n = 0;
    sp_model_global_tensors(sp_model_config(m), names, &n);
    for (int i = 0; i < SP_GLOBAL_TENSORS; i++) g[i] = 0;
    for (int i = 0; i < n; i++) {
        uint32_t c = 0;
        SP_FORWARD(sp_model_tensor_crc(m, names[i], &c, err));
        g[i] = c;
    }
    return SP_OK;
}

static sp_status differs(const char *dir, const char *name, uint32_t now, uint32_t want,
                         const char *how, sp_err *err) {
    return sp_err_set(err, SP_EINVAL, "%s: tensor '%s' %s (CRC-32 0x%08x, expected 0x%08x)", dir,
                      name, how, (unsigned)now, (unsigned)want);
}

sp_status sp_qrun_verify_weights(MPI_Comm comm, const sp_model *m, const char *dir,
                                 const int64_t *g, const int64_t *blk, int n_blocks,
                                 sp_block_weights *buf, const char *how, sp_err *err) {
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    const sp_config *c = sp_model_config(m);
    const int nb = sp_block_tensor_count(c);
    sp_status st = SP_OK;
    if (g && rank == 0) {
        int64_t now[SP_GLOBAL_TENSORS];
        const char *names[SP_GLOBAL_TENSORS];
        int n = 0;
        sp_model_global_tensors(c, names, &n);
        st = sp_qrun_global_crcs(m, now, err);
        for (int i = 0; st == SP_OK && i < n; i++)
            if (now[i] != g[i]) st = differs(dir, names[i], (uint32_t)now[i], (uint32_t)g[i], how, err);
    }
    /* Round-robin: block l on rank l mod size, so a resume after b blocks re-reads b/size each. */
    for (int l = rank; st == SP_OK && l < n_blocks; l += size) {
        uint32_t now[SP_BLOCK_TENSORS];
        st = sp_model_load_block_crc(m, l, buf, now, err);
        for (int i = 0; st == SP_OK && i < nb; i++)
            if (now[i] != (uint32_t)blk[(size_t)l * SP_BLOCK_TENSORS + (size_t)i]) {
                char name[256];
                snprintf(name, sizeof name, "model.layers.%d.%s", l, sp_block_tensor_suffix(i));
                st = differs(dir, name, now[i], (uint32_t)blk[(size_t)l * SP_BLOCK_TENSORS + (size_t)i],
                             how, err);
            }
    }
    return sp_mpi_agree(comm, st, err);
}

cJSON *sp_qrun_weights_json(const sp_config *c, const int64_t *g, const int64_t *blk) {
    cJSON *o = cJSON_CreateObject();
    const char *names[SP_GLOBAL_TENSORS];
    int n = 0;
    sp_model_global_tensors(c, names, &n);
    for (int i = 0; o && i < n; i++) cJSON_AddNumberToObject(o, names[i], (double)g[i]);
    for (int l = 0; o && l < c->n_layers; l++)
        for (int i = 0; i < sp_block_tensor_count(c); i++) {
            char name[256];
            snprintf(name, sizeof name, "model.layers.%d.%s", l, sp_block_tensor_suffix(i));
            cJSON_AddNumberToObject(o, name, (double)blk[(size_t)l * SP_BLOCK_TENSORS + (size_t)i]);
        }
    return o;
}

/* Rank 0: the CRCs source.json records for the tensors of model dir (config c); *have = 0 when
 * it has none (a container from before issue 21). A tensor it has no CRC for is most often a
 * sign that dir is another model: the message names both files. */
static sp_status source_crcs(const char *qdir, const char *dir, const sp_config *c, int64_t *g,
                             int64_t *blk, int *have, sp_err *err) {
    char path[4200], *text = NULL;
    snprintf(path, sizeof path, "%s/source.json", qdir);
    *have = 0;
    sp_status st = sp_qrun_read_file(path, &text, err);
    if (st == SP_ENOTFOUND) return SP_OK;
    if (st) return st;
    cJSON *j = cJSON_Parse(text);
    free(text);
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(j, "weights_crc");
    if (!w) {
        cJSON_Delete(j);
        return SP_OK;
    }
    const char *names[SP_GLOBAL_TENSORS];
    int n = 0;
    sp_model_global_tensors(c, names, &n);
    const int nb = sp_block_tensor_count(c);
    for (int k = 0; st == SP_OK && k < n + c->n_layers * nb; k++) {
        char name[256];
        int64_t *dst;
        if (k < n) {
            snprintf(name, sizeof name, "%s", names[k]);
            dst = &g[k];
        } else {
            int l = (k - n) / nb, i = (k - n) % nb;
            snprintf(name, sizeof name, "model.layers.%d.%s", l, sp_block_tensor_suffix(i));
            dst = &blk[(size_t)l * SP_BLOCK_TENSORS + (size_t)i];
        }
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(w, name);
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 4294967295.0)
            st = sp_err_set(err, SP_EFORMAT, "%s: weights_crc has no uint32 for tensor '%s' of %s: "
                            "is %s the model %s was made from?", path, name, dir, dir, qdir);
        else
            *dst = (int64_t)v->valuedouble;
    }
    cJSON_Delete(j);
    *have = st == SP_OK;
    return st;
}

sp_status sp_qrun_verify_source(MPI_Comm comm, const sp_model *m, const char *dir,
                                const char *qdir, sp_err *err) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    const sp_config *c = sp_model_config(m);
    int64_t g[SP_GLOBAL_TENSORS] = {0};
    int64_t *blk = sp_calloc((size_t)c->n_layers * SP_BLOCK_TENSORS + 1, sizeof *blk, err, "CRCs");
    int have = 0;
    sp_status st = blk ? SP_OK : SP_ENOMEM;
    if (st == SP_OK && rank == 0) st = source_crcs(qdir, dir, c, g, blk, &have, err);
    st = sp_mpi_agree(comm, st, err);
    if (st == SP_OK) {
        MPI_Bcast(&have, 1, MPI_INT, 0, comm);
        MPI_Bcast(blk, c->n_layers * SP_BLOCK_TENSORS, MPI_INT64_T, 0, comm);
    }
    sp_block_weights buf;
    memset(&buf, 0, sizeof buf);
    if (st == SP_OK && have) st = sp_mpi_agree(comm, sp_block_weights_alloc(&buf, c, err), err);
    if (st == SP_OK && have) {
        char how[4400];
        snprintf(how, sizeof how, "differs from the model %s was made from (source.json)", qdir);
        st = sp_qrun_verify_weights(comm, m, dir, g, blk, c->n_layers, &buf, how, err);
    }
    sp_block_weights_free(&buf);
    free(blk);
    return st;
}
