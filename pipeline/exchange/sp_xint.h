/* sp_xint.h — internals of `shardpress exchange`: the models (open, compare, stream out), the
 * files transport, and the state. Not a public interface. */
#ifndef SP_XINT_H
#define SP_XINT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "ckpt/sp_ckpt.h"
#include "common/sp_error.h"
#include "common/sp_stop.h"
#include "shards/sp_safetensors.h"

/* ---- models (sp_xmodel.c) ------------------------------------------------------------------ */

/* A model's tensors in name order (mmap'ed, nothing read). */
typedef struct {
    sp_st_set *set;
    char dir[4096];
    size_t n;
    const sp_st_tensor **t; /* [n], name order          */
    int64_t *off;           /* [n + 1] value offsets   */
    int64_t P;              /* values in all tensors   */
} sp_xmodel;

/* Open dir's safetensors; every tensor must be F32, F16 or BF16 (else SP_EUNSUPPORTED). */
sp_status sp_xmodel_open(sp_xmodel *m, const char *dir, sp_err *err);
void sp_xmodel_close(sp_xmodel *m);
/* local must have base's tensors, shapes and dtypes: one line naming local's dir and tensor. */
sp_status sp_xmodel_check_like(const sp_xmodel *local, const sp_xmodel *base, sp_err *err);
/* CRC-32 of names, dtypes and shapes; and of the tensor bytes in name order. */
uint32_t sp_xmodel_layout_fp(const sp_xmodel *m);
uint32_t sp_xmodel_data_crc(const sp_xmodel *m);
/* Values [off, off+len) of tensor i in fp32 into dst. */
void sp_xmodel_read(const sp_xmodel *m, size_t i, int64_t off, size_t len, float *dst);

/* A streaming safetensors writer with base's header (same names, dtypes, shapes, order):
 * data are appended in that order; finish fsyncs and renames the temporary file. */
typedef struct {
    int fd;
    char path[4200], tmp[4240];
    uint32_t crc; /* of the data bytes written, as sp_xmodel_data_crc counts them */
} sp_xout;
sp_status sp_xout_open(sp_xout *w, const char *path, const sp_xmodel *base, int64_t round,
                       sp_err *err);
/* Append len fp32 values converted to tensor i's dtype (scratch: 2·len bytes for f16/bf16). */
sp_status sp_xout_write(sp_xout *w, const sp_xmodel *base, size_t i, const float *v, size_t len,
                        void *scratch, sp_err *err);
sp_status sp_xout_finish(sp_xout *w, sp_err *err);
void sp_xout_abort(sp_xout *w);
/* Copy config.json and the tokenizer files of base_dir into out_dir (created), atomically each. */
sp_status sp_xmodel_copy_aux(const char *base_dir, const char *out_dir, sp_err *err);

/* ---- files transport (sp_xfiles.c) ---------------------------------------------------------- */

/* One file per sender per round: DIR/round-RRRRRR/NAME.msg, NAME "up-SSSSS" or "down".
 * [32-byte header: "SPXF", u32 version 1, u64 round, char name[16]] [messages]
 * [trailer: u64 messages, u32 crc32 of everything before the trailer, "FXPS"]. */
typedef struct {
    int fd;
    char path[4200], tmp[4240];
    uint32_t crc;
    uint64_t n, bytes;
} sp_xf_writer;
sp_status sp_xf_create(sp_xf_writer *w, const char *dir, int64_t round, const char *name,
                       sp_err *err);
sp_status sp_xf_append(sp_xf_writer *w, const uint8_t *msg, size_t len, sp_err *err);
sp_status sp_xf_commit(sp_xf_writer *w, sp_err *err);
void sp_xf_abort(sp_xf_writer *w);

typedef struct {
    void *map;
    size_t len, pos, end;
    uint64_t n, i;
    char path[4200];
} sp_xf_reader;
/* Wait up to timeout_s for the file (what a missing sender gives: SP_ENOTFOUND naming the file
 * and the timeout), then map and verify it (SP_EFORMAT / SP_ETRUNC naming it). A raised stop
 * flag (common/sp_stop.h; NULL: none) ends the wait with SP_EINTERRUPTED. */
sp_status sp_xf_open_wait(sp_xf_reader *r, const char *dir, int64_t round, const char *name,
                          double timeout_s, const volatile sig_atomic_t *stop, sp_err *err);
/* The next message (validated with sp_cmp_peek). */
sp_status sp_xf_next(sp_xf_reader *r, const uint8_t **msg, size_t *len, sp_err *err);
void sp_xf_close(sp_xf_reader *r);

/* ---- state (sp_xstate.c) --------------------------------------------------------------------- */

typedef struct {
    int64_t round;            /* rounds done                                   */
    char compressor[128], downlink[128], weights[256], lr[32];
    int sites, site0, jobsites;
    uint32_t layout, next_base; /* base layout; CRC of the output last written   */
} sp_xstate_meta;

/* Collective (engine's comm). Load the newest checkpoint: *found = 0 when none. Reads this
 * rank's g_i (row `rank` of g_sites, P values), and when g/x are non-NULL the server's g, x
 * and the weights w[sites] — only when the state's layout and jobsites are these (else the
 * caller reports the mismatch from m). warn receives skipped-checkpoint lines. */
sp_status sp_xstate_load(sp_ckpt *ck, int rank, int64_t P, uint32_t layout, int jobsites,
                         sp_xstate_meta *m, int *found,
                         float *g_i, float *g, float *x, double *w, char *warn, size_t warn_cap,
                         sp_err *err);
/* Collective: write checkpoint m->round with these buffers (server: g, x may be NULL on the
 * other ranks; x NULL without downlink) and wait until it is durable. */
sp_status sp_xstate_save(sp_ckpt *ck, int rank, int size, int64_t P, const sp_xstate_meta *m,
                         const float *g_i, const float *g, const float *x, const double *w,
                         int server, sp_err *err);

#endif
