/* sp_gptq_int.h — internals shared by the GPTQ exporter (sp_gptq_export.c), its
 * quantization-config code (sp_gptq_config.c) and the GPTQ reader (sp_qmodel_gptq.c).
 * Not a public header.
 */
#ifndef SP_GPTQ_INT_H
#define SP_GPTQ_INT_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"
#include "kernels/sp_quant.h"
#include "shards/formats/sp_qcontainer.h"

/* ---- packing one module (exporter) ---------------------------------------------------------- */

/* One module in GPTQ layout (out = q->rows, in = q->cols, G = q->n_groups, b = q->bits):
 *   qweight [wi = ceil(in·b/32), out], qzeros [G, wo = ceil(out·b/32)] (zero − 1 unless v2),
 *   scales fp16 bits [G, out], g_idx [in]. */
typedef struct {
    uint32_t *qweight;
    uint32_t *qzeros;
    uint16_t *scales;
    int32_t *g_idx;
    size_t wi, wo;
} sp_gptq_packed;

/* Pack q. @return SP_EUNSUPPORTED (g_idx not i / group_size; zero point 0 when !v2),
 * SP_EINVAL (scale not fp16-representable), SP_ENOMEM; p is empty on failure. */
sp_status sp_gptq_module_tensors(const sp_qlayer *q, const char *module, int v2,
                                 sp_gptq_packed *p, sp_err *err);
void sp_gptq_packed_free(sp_gptq_packed *p);

/* The quantization config of an export (bits[i] = level of module i of c). */
sp_status sp_gptq_build_config(const sp_qcontainer *c, const int *bits, int v2, cJSON **out,
                               sp_err *err);

/* ---- reading a quantization config (reader) ------------------------------------------------- */

typedef struct sp_gptq_rule sp_gptq_rule;

typedef struct {
    int bits;            /* 2..8                                               */
    int group_size;      /* -1: one group per row                              */
    int desc_act, sym;
    int v2;              /* checkpoint_format "gptq_v2": qzeros hold zeros     */
    int n_rules;
    sp_gptq_rule *rules; /* "dynamic" overrides, in file order                 */
} sp_gptq_qconfig;

/* Parse a quantization config object (what names its file for messages).
 * @return SP_EFORMAT naming the field; SP_EUNSUPPORTED (quant_method other than gptq,
 *         checkpoint_format other than gptq / gptq_v2, bits outside 2..8). */
sp_status sp_gptq_parse_config(const cJSON *q, const char *what, sp_gptq_qconfig *out,
                               sp_err *err);
void sp_gptq_qconfig_free(sp_gptq_qconfig *q);

/* Bits and group size of a module after the dynamic rules (the first rule whose regex matches
 * at the start of the name wins, as in GPTQModel); *quantized = 0 when a "-:" rule excludes
 * it. @return SP_OK, SP_ENOMEM, SP_EFORMAT (the regex engine failed). */
sp_status sp_gptq_module_rule(const sp_gptq_qconfig *q, const char *module, int *bits,
                              int *group_size, int *quantized, sp_err *err);

#endif
