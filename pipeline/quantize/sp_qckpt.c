/* sp_qckpt.c — checkpoints of a quantize run, and resume.
 *
 * A checkpoint after block b (layers_done = b) holds, in one parallel HDF5 file written lazily
 * by the engine's background thread (ckpt/sp_ckpt.h):
 *   attrs     run (the run.json text: options + input fingerprints), layers_done,
 *             model_fingerprint, calib_fingerprint
 *   X         float32 [nsamples, ctx, D]: every rank's calibration hidden states (its windows'
 *             rows), i.e. the input of block b — readable on any rank count
 *   block_crc int64 [b]: CRC32 of each finished block's segment file (blocks/block-NNNNN.spb),
 *             which holds that block's quantized modules at every level
 *   weight_crc int64 [b, SP_BLOCK_TENSORS], global_crc int64 [SP_GLOBAL_TENSORS]: CRC32 of the
 *             fp32 values of every tensor the run read (sp_qrun.h); resume re-reads the blocks
 *             already done and the globals and refuses a changed tensor, naming it
 * The calibration windows need no RNG state: they were drawn once, and X carries them on.
 * X is registered, not copied: the main thread waits for its write only before it overwrites X
 * (the propagation step of the next block), and that wait is what the engine reports as blocked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mpi/sp_mpi.h"
#include "pipeline/quantize/sp_qrun.h"
#include "pipeline/quantize/sp_quantize_int.h"
#include "pipeline/quantize/sp_segment.h"

/* Rank 0: compute the input fingerprints. */
static sp_status fingerprints(sp_qjob *j, sp_err *err) {
    SP_FORWARD(sp_qrun_model_fingerprint(j->o->model_dir, &j->model_fp, err));
    j->calib_fp = 0;
    if (j->o->calib_path) SP_FORWARD(sp_qrun_file_fingerprint(j->o->calib_path, &j->calib_fp, err));
    return SP_OK;
}

/* Rank 0, fresh run: the directory must not hold another run (unless --force), then run.json. */
static sp_status fresh_run(sp_qjob *j, sp_err *err) {
    const char *dir = j->o->checkpoint_dir;
    char path[4200];
    snprintf(path, sizeof path, "%s/run.json", dir);
    if (access(path, F_OK) == 0) {
        SP_RETURN_IF(!j->o->force, err, SP_EEXIST, "%s: checkpoint directory already holds a run "
                     "(run.json); continue it with 'shardpress resume %s' or pass --force to "
                     "start over", dir, dir);
        /* --force: forget the old run's checkpoints (its segments get overwritten). */
        unlink(path);
        snprintf(path, sizeof path, "%s/latest", dir);
        unlink(path);
    }
    SP_FORWARD(sp_qrun_to_json(j->o, j->model_fp, j->calib_fp, &j->run_json, err));
    snprintf(path, sizeof path, "%s/run.json", dir);
    return sp_qrun_write_file(path, j->run_json, err);
}

/* Rank 0, resume: run.json's fingerprints must match the inputs as they are now. */
static sp_status check_fingerprints(sp_qjob *j, sp_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/run.json", j->o->checkpoint_dir);
    SP_FORWARD(sp_qrun_read_file(path, &j->run_json, err));
    sp_quantize_opts o;
    sp_qrun_strings s;
    uint32_t mfp = 0, cfp = 0;
    SP_FORWARD(sp_qrun_from_json(j->run_json, path, &o, &s, &mfp, &cfp, err));
    sp_qrun_free_strings(&s);
    SP_RETURN_IF(mfp != j->model_fp, err, SP_EINVAL, "%s: the model changed since the run "
                 "started (fingerprint %08x, now %08x); refusing to resume", j->o->model_dir,
                 mfp, j->model_fp);
    SP_RETURN_IF(cfp != j->calib_fp, err, SP_EINVAL, "%s: the calibration text changed since the "
                 "run started (fingerprint %08x, now %08x); refusing to resume",
                 j->o->calib_path ? j->o->calib_path : "(none)", cfp, j->calib_fp);
    return SP_OK;
}

/* Every rank: broadcast rank 0's run.json text. */
static sp_status share_run_json(sp_qjob *j, sp_err *err) {
    long n = j->rank == 0 && j->run_json ? (long)strlen(j->run_json) : 0;
    MPI_Bcast(&n, 1, MPI_LONG, 0, j->comm);
    if (j->rank != 0) {
        free(j->run_json);
        j->run_json = sp_calloc((size_t)n + 1, 1, err, "run.json");
    }
    sp_status st = sp_mpi_agree(j->comm, j->run_json ? SP_OK : SP_ENOMEM, err);
    if (st == SP_OK) MPI_Bcast(j->run_json, (int)n + 1, MPI_CHAR, 0, j->comm);
    return st;
}

/* Every rank: restore progress, block CRCs and X from the newest good checkpoint. */
static sp_status restore(sp_qjob *j, char *warn, size_t warn_cap, sp_err *err) {
    sp_ckpt_reader *r = NULL;
    sp_status st = sp_ckpt_open_latest(j->ck, &r, warn, warn_cap, err);
    if (st == SP_ENOTFOUND) { /* killed before the first checkpoint: start over */
        j->start_layer = 0;
        return SP_OK;
    }
    if (st) return st;
    int64_t done = 0;
    char *run = NULL;
    st = sp_ckpt_get_attr_i64(r, "layers_done", &done, err);
    if (st == SP_OK) st = sp_ckpt_get_attr_str(r, "run", &run, err);
    if (st == SP_OK && strcmp(run, j->run_json) != 0)
        st = sp_err_set(err, SP_EFORMAT, "%s: attribute 'run' differs from run.json (a checkpoint "
                        "of another run?)", sp_ckpt_reader_path(r));
    if (st == SP_OK && (done < 1 || done >= j->c->n_layers))
        st = sp_err_set(err, SP_EFORMAT, "%s: attribute 'layers_done' = %lld out of range",
                        sp_ckpt_reader_path(r), (long long)done);
    if (st == SP_OK) st = sp_ckpt_read_rows(r, "block_crc", 0, done, j->block_crc, err);
    int64_t g0[SP_GLOBAL_TENSORS] = {0};
    if (st == SP_OK) st = sp_ckpt_read_rows(r, "weight_crc", 0, done, j->wcrc, err);
    if (st == SP_OK) st = sp_ckpt_read_rows(r, "global_crc", 0, SP_GLOBAL_TENSORS, g0, err);
    if (st == SP_OK && !j->o->rtn)
        st = sp_ckpt_read_rows(r, "X", (int64_t)j->w0, (int64_t)(j->w1 - j->w0), j->X, err);
    free(run);
    sp_ckpt_reader_close(r);
    /* Segments of the finished blocks must be there, with the CRCs the checkpoint recorded. */
    for (int64_t l = 0; st == SP_OK && j->rank == 0 && l < done; l++)
        st = sp_segment_verify(j->segdir, (int)l, (uint32_t)j->block_crc[l], err);
    /* The weights: the globals (rank 0 read them at setup) and the blocks already done, re-read
     * now and spread over the ranks, must be the values the run started from. */
    const char *how = "changed since the run started; refusing to resume";
    const char *gn[SP_GLOBAL_TENSORS];
    int ng = 0;
    sp_model_global_tensors(j->c, gn, &ng);
    for (int i = 0; st == SP_OK && j->rank == 0 && i < ng; i++)
        if (g0[i] != j->gcrc[i])
            st = sp_err_set(err, SP_EINVAL, "%s: tensor '%s' %s (CRC-32 0x%08x, expected 0x%08x)",
                            j->o->model_dir, gn[i], how, (unsigned)j->gcrc[i], (unsigned)g0[i]);
    st = sp_mpi_agree(j->comm, st, err);
    if (st == SP_OK)
        st = sp_qrun_verify_weights(j->comm, j->m, j->o->model_dir, NULL, j->wcrc, (int)done,
                                    &j->dense, how, err);
    if (st == SP_OK) j->start_layer = (int)done;
    return st;
}

sp_status sp_qckpt_start(sp_qjob *j, int resume, char *warn, size_t warn_cap, sp_err *err) {
    const sp_quantize_opts *o = j->o;
    sp_status st = SP_OK;
    if (j->rank == 0) {
        st = fingerprints(j, err);
        if (st == SP_OK) st = resume ? check_fingerprints(j, err) : fresh_run(j, err);
    }
    st = sp_mpi_agree(j->comm, st, err);
    if (st) return st;
    SP_FORWARD(share_run_json(j, err));
    sp_ckpt_opts co;
    sp_ckpt_opts_default(&co);
    co.compress = (sp_ckpt_compress)o->checkpoint_compress;
    SP_FORWARD(sp_ckpt_create(&j->ck, j->comm, o->checkpoint_dir, &co, err));
    if (resume) SP_FORWARD(restore(j, warn, warn_cap, err));
    return SP_OK;
}

sp_status sp_qckpt_save(sp_qjob *j, int layers_done, sp_err *err) {
    const sp_quantize_opts *o = j->o;
    const sp_config *c = j->c;
    /* Every rank must reach sp_ckpt_commit even when one of its puts failed: the engine then
     * discards that checkpoint on every rank, while a rank that skipped the commit would leave
     * the other ranks' I/O threads waiting. The first error is kept and agreed on below. */
    sp_status st = sp_ckpt_begin(j->ck, layers_done, err);
    if (st == SP_OK) st = sp_ckpt_put_attr_str(j->ck, "run", j->run_json, err);
    if (st == SP_OK) st = sp_ckpt_put_attr_i64(j->ck, "layers_done", layers_done, err);
    if (st == SP_OK) st = sp_ckpt_put_attr_i64(j->ck, "model_fingerprint", j->model_fp, err);
    if (st == SP_OK) st = sp_ckpt_put_attr_i64(j->ck, "calib_fingerprint", j->calib_fp, err);
    /* Only rank 0 knows the CRCs (it wrote the segments); the others add no rows. */
    int64_t crc_shape[1] = {layers_done};
    if (st == SP_OK)
        st = sp_ckpt_put_rows(j->ck, "block_crc", SP_CKPT_I64, 1, crc_shape, 0,
                              j->rank == 0 ? layers_done : 0, j->block_crc, err);
    int64_t wshape[2] = {layers_done, SP_BLOCK_TENSORS}, gshape[1] = {SP_GLOBAL_TENSORS};
    if (st == SP_OK)
        st = sp_ckpt_put_rows(j->ck, "weight_crc", SP_CKPT_I64, 2, wshape, 0,
                              j->rank == 0 ? layers_done : 0, j->wcrc, err);
    if (st == SP_OK)
        st = sp_ckpt_put_rows(j->ck, "global_crc", SP_CKPT_I64, 1, gshape, 0,
                              j->rank == 0 ? SP_GLOBAL_TENSORS : 0, j->gcrc, err);
    if (st == SP_OK && !o->rtn) {
        int64_t shape[3] = {o->nsamples, o->ctx, c->dim};
        st = sp_ckpt_put_rows(j->ck, "X", SP_CKPT_F32, 3, shape, (int64_t)j->w0,
                              (int64_t)(j->w1 - j->w0), j->X, err);
    }
    sp_err cerr = {SP_OK, ""};
    sp_status cst = sp_ckpt_commit(j->ck, &cerr);
    if (st == SP_OK && cst != SP_OK) {
        st = cst;
        if (err) *err = cerr;
    }
    st = sp_mpi_agree(j->comm, st, err);
    if (st == SP_OK) j->checkpoints++;
    return st;
}

sp_status sp_qckpt_before_overwrite(sp_qjob *j, sp_err *err) {
    return sp_ckpt_wait_buffer(j->ck, j->X, err);
}

sp_status sp_qckpt_finish(sp_qjob *j, sp_quantize_result *res, sp_err *err) {
    sp_ckpt_stats s;
    sp_ckpt_get_stats(j->ck, &s);
    sp_status st = sp_ckpt_destroy(j->ck, err);
    j->ck = NULL;
    double mine[2] = {s.blocked_s, s.write_s}, mx[2] = {0, 0};
    MPI_Allreduce(mine, mx, 2, MPI_DOUBLE, MPI_MAX, j->comm);
    res->ckpt_blocked_s = mx[0];
    res->ckpt_write_s = mx[1];
    return sp_mpi_agree(j->comm, st, err);
}

sp_status sp_quantize_resume(MPI_Comm comm, const char *dir, volatile sig_atomic_t *stop_flag,
                             sp_quantize_result *res, sp_err *err) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    memset(res, 0, sizeof *res);
    char path[4200], *text = NULL;
    snprintf(path, sizeof path, "%s/run.json", dir);
    sp_status st = SP_OK;
    long n = 0;
    if (rank == 0) {
        st = sp_qrun_read_file(path, &text, err);
        if (st == SP_ENOTFOUND)
            sp_err_set(err, SP_ENOTFOUND, "%s: no run.json: not a checkpoint directory of "
                       "'shardpress quantize --checkpoint-dir'", dir);
        n = text ? (long)strlen(text) : 0;
    }
    st = sp_mpi_agree(comm, st, err);
    if (st) {
        free(text);
        return st;
    }
    MPI_Bcast(&n, 1, MPI_LONG, 0, comm);
    if (rank != 0) text = sp_calloc((size_t)n + 1, 1, err, "run.json");
    st = sp_mpi_agree(comm, text ? SP_OK : SP_ENOMEM, err);
    if (st) {
        free(text);
        return st;
    }
    MPI_Bcast(text, (int)n + 1, MPI_CHAR, 0, comm);
    sp_quantize_opts o;
    sp_qrun_strings s;
    uint32_t mfp, cfp;
    st = sp_qrun_from_json(text, path, &o, &s, &mfp, &cfp, err);
    free(text);
    /* Issue 21: resuming a run whose output exists used to fail with the output writer's
     * "use --force", which resume does not take. Say what happened and what works. */
    struct stat sb;
    if (st == SP_OK && rank == 0 && !o.force && stat(o.out_dir, &sb) == 0)
        st = sp_err_set(err, SP_EEXIST, "%s: nothing to resume: the run's output %s exists (the "
                        "run finished); to produce it again, remove %s and run 'shardpress "
                        "resume %s'", dir, o.out_dir, o.out_dir, dir);
    st = sp_mpi_agree(comm, st, err);
    if (st) {
        sp_qrun_free_strings(&s);
        return st;
    }
    o.stop_flag = stop_flag;
    /* a resume on fewer ranks may not fit where the run did */
    st = sp_quantize_check_memory(comm, &o, err);
    if (st == SP_OK) st = sp_quantize_job(comm, &o, 1, res, err);
    sp_qrun_free_strings(&s);
    return st;
}
