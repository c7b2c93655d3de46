/* fuzz_st_index.c — sp_st_set_open_dir on a model directory whose
 * model.safetensors.index.json is the input. The directory also holds two real shards, made
 * once at start-up from the tensor names of the bundled model (models/stories260K, each tensor
 * a one-element F32, odd and even names in model-00001/00002-of-00002.safetensors), so an
 * index that names them is followed into the shards, tensor by tensor. */
#include "tests/fuzz/fuzz_util.h"

#include "shards/sp_safetensors.h"

static char dir_[600];

static void make_shards(void) {
    snprintf(dir_, sizeof dir_, "%s/model", fuzz_dir());
    if (mkdir(dir_, 0755) != 0) abort();
    char path[800];
    snprintf(path, sizeof path, "%s/model.safetensors", SP_FUZZ_MODEL_DIR);
    sp_st_file *f = NULL;
    sp_err err = {SP_OK, ""};
    if (sp_safetensors_open(&f, path, &err) != SP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    size_t n = sp_safetensors_count(f);
    sp_st_write_tensor *t = calloc(n, sizeof *t);
    static const float one = 1.0f;
    if (!t) abort();
    for (int shard = 0; shard < 2; shard++) {
        size_t k = 0;
        for (size_t i = (size_t)shard; i < n; i += 2, k++) {
            t[k].name = sp_safetensors_at(f, i)->name;
            t[k].dtype = SP_DTYPE_F32;
            t[k].ndim = 1;
            t[k].shape[0] = 1;
            t[k].data = &one;
        }
        snprintf(path, sizeof path, "%s/model-0000%d-of-00002.safetensors", dir_, shard + 1);
        if (sp_safetensors_write(path, t, k, NULL, &err) != SP_OK) {
            fprintf(stderr, "%s\n", err.msg);
            abort();
        }
    }
    free(t);
    sp_safetensors_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir_[0]) make_shards();
    (void)fuzz_file("model/model.safetensors.index.json", data, size);
    sp_st_set *s = NULL;
    sp_err err = {SP_OK, ""};
    if (sp_st_set_open_dir(&s, dir_, &err) != SP_OK) return 0;
    for (size_t i = 0; i < sp_st_set_count(s); i++) {
        const char *file = NULL;
        if (!sp_st_set_find(s, sp_st_set_name(s, i), &file) || !file) abort();
    }
    sp_st_set_close(s);
    return 0;
}
