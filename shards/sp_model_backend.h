/* sp_model_backend.h — how a storage format plugs into sp_model (internal to shards/).
 *
 * sp_model_open() reads config.json (or a llama2.c header) itself, then asks each backend's
 * probe in turn whether the directory is of its kind. A probe returns SP_ENOTFOUND when the
 * directory is not its kind (the next probe is tried), SP_OK with *ctx set when it opened it,
 * or any other error when the directory is its kind but broken (opening stops there).
 *
 * Backends present tensors by Hugging Face name, as fp32 rows, whatever they store.
 */
#ifndef SP_MODEL_BACKEND_H
#define SP_MODEL_BACKEND_H

#include "shards/sp_model.h"

typedef struct {
    const char *name; /* "safetensors", "llama2c", "sp-hdf5", "gptq" */
    sp_status (*tensor_desc)(void *ctx, const char *name, sp_tensor_desc *desc, sp_err *err);
    sp_status (*read_rows)(void *ctx, const char *name, int64_t row0, int64_t nrows, float *dst,
                           sp_err *err);
    /* Optional (NULL when the format has one weight per module): choose the bit level of
     * one module ("model.layers.0.self_attn.q_proj") or of all modules (module == NULL). */
    sp_status (*select_bits)(void *ctx, const char *module, int bits, sp_err *err);
    void (*close)(void *ctx);
} sp_model_backend;

/* A backend probe. dir is the model directory, cfg the parsed config.json (NULL for a
 * llama2.c file, whose probe fills cfg_out instead). */
typedef sp_status (*sp_model_probe_fn)(const char *dir, const sp_config *cfg, sp_config *cfg_out,
                                       void **ctx, const sp_model_backend **be, sp_err *err);

/* The probes, in the order sp_model_open tries them. Quantized formats come first. */
sp_status sp_qmodel_probe_h5(const char *dir, const sp_config *cfg, sp_config *cfg_out, void **ctx,
                             const sp_model_backend **be, sp_err *err);
sp_status sp_qmodel_probe_gptq(const char *dir, const sp_config *cfg, sp_config *cfg_out,
                               void **ctx, const sp_model_backend **be, sp_err *err);
sp_status sp_safetensors_probe(const char *dir, const sp_config *cfg, sp_config *cfg_out,
                               void **ctx, const sp_model_backend **be, sp_err *err);
sp_status sp_llama2c_probe(const char *path, const sp_config *cfg, sp_config *cfg_out, void **ctx,
                           const sp_model_backend **be, sp_err *err);

#endif
