/* sp_qmodel_int.h — helpers shared by the two quantized backends (sp_qmodel_h5.c,
 * sp_qmodel_gptq.c) and the GPTQ exporter. Internal to shards/.
 */
#ifndef SP_QMODEL_INT_H
#define SP_QMODEL_INT_H

#include "shards/sp_model_backend.h"

/* "<dir>/<name>" into buf (cap bytes). @return SP_EINVAL when it does not fit. */
sp_status sp_qmodel_join(char *buf, size_t cap, const char *dir, const char *name, sp_err *err);

#endif
