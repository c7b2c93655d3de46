/* fuzz_run_json.c — sp_qrun_from_json on run.json, the description of a quantize run that
 * resume reads from the checkpoint directory (and from every checkpoint's "run" attribute). */
#include "tests/fuzz/fuzz_util.h"

#include "pipeline/quantize/sp_qrun.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = fuzz_strdup(data, size);
    sp_quantize_opts o;
    sp_qrun_strings s;
    uint32_t mfp = 0, cfp = 0;
    sp_err err = {SP_OK, ""};
    (void)sp_qrun_from_json(json, "run.json", &o, &s, &mfp, &cfp, &err);
    sp_qrun_free_strings(&s);
    free(json);
    return 0;
}
