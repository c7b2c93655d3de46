/* sp_gptq_export.h — export a shardpress quantized container as a GPTQ checkpoint
 * (AutoGPTQ / GPTQModel "gptq" checkpoint format, static groups, desc_act false).
 *
 * For every module at its chosen level (b bits, in = cols, out = rows, G groups):
 *   <module>.qweight  int32 [ceil(in·b/32), out]   column o = codes W[o, :] packed LSB-first
 *                                                   along the input dim (sp_pack layout)
 *   <module>.qzeros   int32 [G, ceil(out·b/32)]    row g = zero points of group g packed along
 *                                                   the output dim, stored as zero − 1 (v1)
 *   <module>.scales   fp16  [G, out]
 *   <module>.g_idx    int32 [in]                    g_idx[i] = i / group_size
 * so that W[o, i] = scales[g_idx[i], o] · (q[i, o] − (qzeros[g_idx[i], o] + 1)).
 * Dense tensors (embeddings, norms, biases, an untied lm_head) are stored as fp32.
 *
 * quantize_config.json (and config.json "quantization_config") hold bits, group_size, sym,
 * desc_act=false, static_groups=true, checkpoint_format, quant_method="gptq", and a GPTQModel
 * "dynamic" map {"+:^<escaped module>$": {"bits": b, ...}} for every module whose bits (or
 * group size, or sym) differ from the defaults. When in·b or out·b is not a multiple of 32 the
 * packed tensors end with zero padding codes and the config records "shardpress_padded": true
 * (real Llama shapes never need it; loaders other than shardpress may refuse such files).
 *
 * GPTQ v1 stores zero − 1, so an asymmetric zero point of 0 cannot be written in v1
 * (SP_EUNSUPPORTED names the module); set checkpoint_v2 to store zeros as they are
 * (checkpoint_format "gptq_v2", as GPTQModel does).
 *
 * The export is written into "<outdir>.partial.XXXXXX" and renamed to outdir at the end, so
 * an interrupted export never looks complete. Tensors go to model.safetensors, or to
 * model-0000k-of-0000n.safetensors shards plus model.safetensors.index.json when they exceed
 * shard_bytes; one shard at a time is held in memory.
 *
 * Threads: opens the container with HDF5; call from one thread, with no other HDF5 use in the
 * process at the same time.
 */
#ifndef SP_GPTQ_EXPORT_H
#define SP_GPTQ_EXPORT_H

#include <signal.h>
#include <stddef.h>

#include "common/sp_error.h"

typedef struct {
    int force;            /* replace an existing outdir                                    */
    int checkpoint_v2;    /* store zero points directly (checkpoint_format "gptq_v2")      */
    size_t shard_bytes;   /* 0: 4 GiB. Tensors per shard file, in bytes                    */
    /* Per-module levels that replace the container's selected ones (module = HF name
     * without ".weight"). Every module named must be stored at that level. */
    int n_overrides;
    const char *const *override_modules;
    const int *override_bits;
    /* raised (common/sp_stop.h): stop at the next module, remove the partial output, return
     * SP_EINTERRUPTED; NULL: never */
    const volatile sig_atomic_t *stop_flag;
} sp_gptq_export_opts;

/* Export the container in container_dir (model.sp.h5 + config.json + tokenizer files) to
 * outdir. opts may be NULL (defaults).
 * @return SP_OK; SP_EEXIST (outdir exists and !force); SP_EINVAL (outdir is the container
 *         directory, unknown override module); SP_ENOTFOUND (level not stored);
 *         SP_EUNSUPPORTED (non-static g_idx, zero point 0 in v1); errors of the container
 *         reader and of the writers. Nothing is left at outdir on failure (an existing outdir
 *         is only replaced after the new one is complete). */
sp_status sp_export_gptq(const char *container_dir, const char *outdir,
                         const sp_gptq_export_opts *opts, sp_err *err);

#endif
