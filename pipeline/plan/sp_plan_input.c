/* sp_plan_input.c — what the plan reads: the model's headers, rates files, memory sizes, and
 * the calibration of this machine's rates. See sp_plan.h. */
#include "pipeline/plan/sp_plan.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kernels/sp_blas.h"
#include "shards/sp_safetensors.h"

/* ---- the model ---------------------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

void sp_plan_model_from_config(sp_plan_model *m, const sp_config *cfg, sp_dtype dt) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    snprintf(m->format, sizeof m->format, "config");
    m->dtype = dt;
    double e = (double)sp_dtype_size(dt), D = cfg->dim, F = cfg->hidden_dim, V = cfg->vocab_size;
    double q = (double)cfg->n_heads * cfg->head_dim, kv = (double)cfg->n_kv_heads * cfg->head_dim;
    double bias = cfg->qkv_bias ? q + 2 * kv : 0;
    m->block_bytes = e * (2 * D + q * D + 2 * kv * D + D * q + 3 * D * F + bias);
    m->embed_bytes = e * V * D;
    m->head_bytes = cfg->tie_embeddings ? 0 : e * V * D;
    m->file_bytes = cfg->n_layers * m->block_bytes + m->embed_bytes + m->head_bytes + e * D;
}

/* The llama2.c legacy header: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab
 * (negative: untied head), seq_len); fp32 weights follow. Only the header is read. */
static sp_status read_llama2c(sp_plan_model *m, const char *path, sp_err *err) {
    FILE *f = fopen(path, "rb");
    SP_RETURN_IF(!f, err, errno == ENOENT ? SP_ENOTFOUND : SP_EIO, "%s: cannot open: %s", path,
                 strerror(errno));
    int32_t h[7];
    size_t got = fread(h, sizeof(int32_t), 7, f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    SP_RETURN_IF(got != 7, err, SP_ETRUNC, "%s: shorter than the 28-byte llama2.c header", path);
    int D = h[0], F = h[1], L = h[2], Hq = h[3], Hkv = h[4], V = h[5], S = h[6];
    int tied = V > 0;
    if (V < 0 && V != INT32_MIN) V = -V;
    SP_RETURN_IF(D <= 0 || F <= 0 || L <= 0 || Hq <= 0 || Hkv <= 0 || V <= 0 || S <= 0 ||
                 D % Hq != 0 || Hq % Hkv != 0 || (D / Hq) % 2 != 0, err, SP_EFORMAT,
                 "%s: impossible llama2.c header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, "
                 "n_kv_heads %d, vocab_size %d, seq_len %d)", path, h[0], h[1], h[2], h[3], h[4],
                 h[5], h[6]);
    sp_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "llama2c");
    c.dim = D;
    c.hidden_dim = F;
    c.n_layers = L;
    c.n_heads = Hq;
    c.n_kv_heads = Hkv;
    c.head_dim = D / Hq;
    c.vocab_size = V;
    c.max_seq_len = S;
    c.tie_embeddings = tied;
    sp_plan_model_from_config(m, &c, SP_DTYPE_F32);
    snprintf(m->format, sizeof m->format, "llama2c");
    m->n_files = 1;
    SP_RETURN_IF((double)size < m->file_bytes, err, SP_ETRUNC, "%s: file is %ld bytes, its header "
                 "implies at least %.0f", path, size, m->file_bytes);
    m->file_bytes = (double)size;
    return SP_OK;
}

/* Expected element count of a tensor, checked against its header. */
static sp_status need(const sp_st_set *s, const char *name, double rows, double cols,
                      double *bytes, sp_dtype *dt, sp_err *err) {
    const char *file = NULL;
    const sp_st_tensor *t = sp_st_set_find(s, name, &file);
    SP_RETURN_IF(!t, err, SP_ENOTFOUND, "tensor %s is missing from the model's safetensors", name);
    double n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (double)t->shape[i];
    SP_RETURN_IF(n != rows * cols, err, SP_EFORMAT, "%s: tensor %s has %.0f elements, config.json "
                 "implies %.0f x %.0f", file, name, n, rows, cols);
    *bytes += (double)t->nbytes;
    if (dt) *dt = t->dtype;
    return SP_OK;
}

static sp_status read_safetensors(sp_plan_model *m, const char *dir, sp_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    sp_config c;
    SP_FORWARD(sp_config_load_json(&c, path, err));
    sp_plan_model_from_config(m, &c, SP_DTYPE_F32);
    snprintf(m->format, sizeof m->format, "safetensors");
    sp_st_set *s = NULL;
    SP_FORWARD(sp_st_set_open_dir(&s, dir, err));
    sp_status st = SP_OK;
    double D = c.dim, F = c.hidden_dim, q = (double)c.n_heads * c.head_dim;
    double kv = (double)c.n_kv_heads * c.head_dim;
    m->block_bytes = m->embed_bytes = m->head_bytes = m->file_bytes = 0;
    st = need(s, "model.embed_tokens.weight", c.vocab_size, D, &m->embed_bytes, NULL, err);
    if (st == SP_OK && !c.tie_embeddings)
        st = need(s, "lm_head.weight", c.vocab_size, D, &m->head_bytes, NULL, err);
    for (int l = 0; l < c.n_layers && st == SP_OK; l++) {
        static const char *sfx[9] = {"input_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                                     "self_attn.v_proj", "self_attn.o_proj",
                                     "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
                                     "mlp.down_proj"};
        const double rows[9] = {D, q, kv, kv, D, D, F, F, D}, cols[9] = {1, D, D, D, q, 1, D, D, F};
        double b = 0;
        char name[256];
        for (int i = 0; i < 9 && st == SP_OK; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, sfx[i]);
            st = need(s, name, rows[i], cols[i], &b, i == 1 && l == 0 ? &m->dtype : NULL, err);
        }
        if (c.qkv_bias)
            for (int i = 1; i < 4 && st == SP_OK; i++) {
                snprintf(name, sizeof name, "model.layers.%d.%s.bias", l, sfx[i]);
                st = need(s, name, rows[i], 1, &b, NULL, err);
            }
        if (b > m->block_bytes) m->block_bytes = b;
    }
    /* Every tensor, and the number of distinct files. */
    const char *files[256];
    int nf = 0;
    for (size_t i = 0; i < sp_st_set_count(s) && st == SP_OK; i++) {
        const char *file = NULL;
        const sp_st_tensor *t = sp_st_set_find(s, sp_st_set_name(s, i), &file);
        if (!t) continue;
        m->file_bytes += (double)t->nbytes;
        int seen = 0;
        for (int k = 0; k < nf && !seen; k++) seen = files[k] == file || !strcmp(files[k], file);
        if (!seen && nf < 256) files[nf++] = file;
    }
    m->n_files = nf;
    sp_st_set_close(s);
    return st;
}

sp_status sp_plan_model_read(sp_plan_model *m, const char *path, sp_err *err) {
    memset(m, 0, sizeof *m);
    SP_RETURN_IF(!path || !*path, err, SP_EINVAL, "plan: --model is required");
    struct stat sb;
    SP_RETURN_IF(stat(path, &sb) != 0, err, errno == ENOENT ? SP_ENOTFOUND : SP_EIO,
                 "%s: cannot open model: %s", path, strerror(errno));
    if (S_ISREG(sb.st_mode)) {
        SP_RETURN_IF(!ends_with(path, ".bin"), err, SP_EINVAL, "%s: not a model directory or a "
                     "llama2.c .bin file", path);
        return read_llama2c(m, path, err);
    }
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", path);
    if (access(cfg, F_OK) == 0) return read_safetensors(m, path, err);
    /* A directory without config.json: its single llama2.c checkpoint (as sp_model_open). */
    DIR *d = opendir(path);
    SP_RETURN_IF(!d, err, SP_EIO, "%s: cannot list directory: %s", path, strerror(errno));
    char bin[4096] = "";
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!ends_with(de->d_name, ".bin") || !strncmp(de->d_name, "tok", 3) ||
            !strncmp(de->d_name, "pytorch_model", 13))
            continue;
        if (count++ == 0) snprintf(bin, sizeof bin, "%s/%s", path, de->d_name);
    }
    closedir(d);
    SP_RETURN_IF(count == 0, err, SP_ENOTFOUND, "%s: no config.json and no llama2.c .bin "
                 "checkpoint: not a model directory", path);
    SP_RETURN_IF(count > 1, err, SP_EINVAL, "%s: no config.json and %d .bin checkpoints: give "
                 "the path of the one to use", path, count);
    return read_llama2c(m, bin, err);
}

/* ---- sizes ---------------------------------------------------------------------------------- */

sp_status sp_plan_parse_size(const char *opt, const char *val, double *bytes, sp_err *err) {
    SP_RETURN_IF(!val || !*val, err, SP_EINVAL, "%s: missing value", opt);
    char *end = NULL;
    errno = 0;
    double v = strtod(val, &end);
    SP_RETURN_IF(errno || end == val || !isfinite(v) || v <= 0, err, SP_EINVAL,
                 "%s: '%s' is not a positive size (e.g. 24G, 512M, 1.5T)", opt, val);
    double mult = 1;
    switch (toupper((unsigned char)*end)) {
    case '\0': break;
    case 'K': mult = 1024.0; break;
    case 'M': mult = 1048576.0; break;
    case 'G': mult = 1073741824.0; break;
    case 'T': mult = 1099511627776.0; break;
    default: mult = 0;
    }
    if (*end) {
        const char *rest = end + 1;
        if (!strcmp(rest, "iB") || !strcmp(rest, "B") || !strcmp(rest, "ib") || !strcmp(rest, "b"))
            rest += strlen(rest);
        SP_RETURN_IF(mult == 0 || *rest, err, SP_EINVAL,
                     "%s: '%s' has an unknown unit (use K, M, G or T)", opt, val);
    }
    *bytes = v * mult;
    return SP_OK;
}

/* ---- rates ------------------------------------------------------------------------------- */

typedef struct {
    const char *key;
    size_t off;
} rate_field;

static const rate_field FIELDS[] = {
    {"sgemm_gflops", offsetof(sp_plan_rates, sgemm_gflops)},
    {"dgemm_gflops", offsetof(sp_plan_rates, dgemm_gflops)},
    {"round_ns", offsetof(sp_plan_rates, round_ns)},
    {"write_mb_s", offsetof(sp_plan_rates, write_mb_s)},
    {"read_mb_s", offsetof(sp_plan_rates, read_mb_s)},
    {"net_mb_s", offsetof(sp_plan_rates, net_mb_s)},
    {"base_mb", offsetof(sp_plan_rates, base_mb)},
};
#define N_FIELDS (sizeof FIELDS / sizeof FIELDS[0])

void sp_plan_rates_default(sp_plan_rates *r) {
    memset(r, 0, sizeof *r);
    r->sgemm_gflops = 20;
    r->dgemm_gflops = 10;
    r->round_ns = 2;
    r->write_mb_s = 200;
    r->read_mb_s = 500;
    r->net_mb_s = 1000;
    r->base_mb = 32;
    snprintf(r->source, sizeof r->source, "defaults");
}

sp_status sp_plan_rates_load(sp_plan_rates *r, const char *path, sp_err *err) {
    FILE *f = fopen(path, "rb");
    SP_RETURN_IF(!f, err, errno == ENOENT ? SP_ENOTFOUND : SP_EIO, "%s: cannot open: %s", path,
                 strerror(errno));
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int big = !feof(f);
    fclose(f);
    SP_RETURN_IF(big, err, SP_EFORMAT, "%s: a rates file is a small JSON object (< 8 KiB)", path);
    buf[n] = '\0';
    cJSON *j = cJSON_Parse(buf);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return sp_err_set(err, SP_EFORMAT, "%s: not a JSON object", path);
    }
    sp_plan_rates nr = *r;
    sp_status st = SP_OK;
    for (cJSON *it = j->child; it && st == SP_OK; it = it->next) {
        size_t k = 0;
        while (k < N_FIELDS && strcmp(FIELDS[k].key, it->string)) k++;
        if (k == N_FIELDS)
            st = sp_err_set(err, SP_EFORMAT, "%s: unknown member \"%s\" (known: sgemm_gflops, "
                            "dgemm_gflops, round_ns, write_mb_s, read_mb_s, net_mb_s, base_mb)",
                            path, it->string);
        else if (!cJSON_IsNumber(it) || !(it->valuedouble > 0) || !isfinite(it->valuedouble))
            st = sp_err_set(err, SP_EFORMAT, "%s: member \"%s\" must be a positive number", path,
                            it->string);
        else
            *(double *)(void *)((char *)&nr + FIELDS[k].off) = it->valuedouble;
    }
    cJSON_Delete(j);
    if (st) return st;
    const char *base = strrchr(path, '/');
    snprintf(nr.source, sizeof nr.source, "%s", base ? base + 1 : path);
    *r = nr;
    return SP_OK;
}

sp_status sp_plan_rates_save(const sp_plan_rates *r, const char *path, sp_err *err) {
    FILE *f = fopen(path, "w");
    SP_RETURN_IF(!f, err, SP_EIO, "%s: cannot create: %s", path, strerror(errno));
    fprintf(f, "{\n");
    for (size_t k = 0; k < N_FIELDS; k++)
        fprintf(f, "  \"%s\": %.6g%s\n", FIELDS[k].key,
                *(const double *)(const void *)((const char *)r + FIELDS[k].off),
                k + 1 < N_FIELDS ? "," : "");
    fprintf(f, "}\n");
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    SP_RETURN_IF(bad, err, SP_EIO, "%s: write failed", path);
    return SP_OK;
}

/* ---- calibration ---------------------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* VmRSS of this process in MiB (0 when /proc is unavailable). */
static double rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atof(line + 6);
    fclose(f);
    return kb / 1024.0;
}

/* Repeat a GEMM of the shapes quantize runs (a window of 512 tokens times a 1024-wide
 * matrix) for about `secs` seconds, through sp_blas as the jobs run it (with the threads
 * main set); GFLOP/s. */
static double gemm_rate(int dbl, double secs, sp_err *err, sp_status *st) {
    const int M = 512, N = 1024, K = 1024;
    size_t es = dbl ? sizeof(double) : sizeof(float);
    char *a = sp_malloc((size_t)M * K * es, err, "calibration");
    char *b = sp_malloc((size_t)K * N * es, err, "calibration");
    char *c = sp_malloc((size_t)M * N * es, err, "calibration");
    double rate = 0;
    if (!a || !b || !c) {
        *st = SP_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < (size_t)M * K; i++)
        dbl ? (((double *)(void *)a)[i] = 1e-3 * (double)(i % 97)) : (((float *)(void *)a)[i] = 1e-3f * (float)(i % 97));
    for (size_t i = 0; i < (size_t)K * N; i++)
        dbl ? (((double *)(void *)b)[i] = 1e-3 * (double)(i % 89)) : (((float *)(void *)b)[i] = 1e-3f * (float)(i % 89));
    int reps = 0;
    double t0 = now_s(), t = 0;
    do {
        if (dbl)
            sp_blas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0,
                          (double *)(void *)a, K, (double *)(void *)b, K, 0.0,
                          (double *)(void *)c, N);
        else
            sp_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f,
                          (float *)(void *)a, K, (float *)(void *)b, K, 0.0f,
                          (float *)(void *)c, N);
        reps++;
        t = now_s() - t0;
    } while (t < secs);
    rate = 2.0 * M * N * K * reps / t / 1e9;
done:
    free(a);
    free(b);
    free(c);
    return rate;
}

/* The Hessian accumulation's inner loop: round a double to the grid, add to an int64. */
static double round_rate(sp_err *err, sp_status *st) {
    const size_t n = (size_t)1 << 20;
    double *v = sp_malloc(n * sizeof *v, err, "calibration");
    int64_t *acc = sp_calloc(n, sizeof *acc, err, "calibration");
    double ns = 0;
    if (!v || !acc) {
        *st = SP_ENOMEM;
    } else {
        for (size_t i = 0; i < n; i++) v[i] = 1e3 * sin((double)i);
        double t0 = now_s(), inv = 1.0 / 0x1p-20;
        int reps = 0;
        do {
            for (size_t i = 0; i < n; i++) {
                double x = v[i];
                if (fabs(x) > 1e300) { *st = sp_err_set(err, SP_EINTERNAL, "calibration"); break; }
                acc[i] += llrint(x * inv);
            }
            reps++;
        } while (now_s() - t0 < 0.3);
        ns = (now_s() - t0) / ((double)n * reps) * 1e9;
    }
    free(v);
    free(acc);
    return ns;
}

/* Write 64 MiB to dir (fsync'ed), drop it from the page cache, read it back; MB/s each. */
static sp_status disk_rates(const char *dir, double *wr, double *rd, sp_err *err) {
    const size_t chunk = (size_t)1 << 22, total = (size_t)64 << 20;
    char path[4096];
    snprintf(path, sizeof path, "%s/.sp-plan-calibrate.%ld", dir, (long)getpid());
    char *buf = sp_malloc(chunk, err, "calibration");
    if (!buf) return SP_ENOMEM;
    for (size_t i = 0; i < chunk; i++) buf[i] = (char)(i * 131 + 7);
    sp_status st = SP_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        free(buf);
        return sp_err_set(err, SP_EIO, "%s: cannot create (--calibrate-dir): %s", path,
                          strerror(errno));
    }
    double t0 = now_s();
    for (size_t done = 0; done < total && st == SP_OK; done += chunk)
        if (write(fd, buf, chunk) != (ssize_t)chunk)
            st = sp_err_set(err, SP_EIO, "%s: write failed: %s", path, strerror(errno));
    if (st == SP_OK && fsync(fd) != 0)
        st = sp_err_set(err, SP_EIO, "%s: fsync failed: %s", path, strerror(errno));
    *wr = (double)total / (now_s() - t0) / 1e6;
    close(fd);
    if (st == SP_OK) {
        fd = open(path, O_RDONLY);
        if (fd < 0) {
            st = sp_err_set(err, SP_EIO, "%s: cannot reopen: %s", path, strerror(errno));
        } else {
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); /* clean pages: a cold read */
            t0 = now_s();
            ssize_t got = 0, sum = 0;
            while ((got = read(fd, buf, chunk)) > 0) sum += got;
            *rd = (double)sum / (now_s() - t0) / 1e6;
            close(fd);
        }
    }
    unlink(path);
    free(buf);
    return st;
}

sp_status sp_plan_rates_calibrate(sp_plan_rates *r, const char *dir, sp_err *err) {
    sp_status st = SP_OK;
    sp_plan_rates nr = *r;
    nr.sgemm_gflops = gemm_rate(0, 0.7, err, &st);
    if (st == SP_OK) nr.dgemm_gflops = gemm_rate(1, 0.7, err, &st);
    if (st == SP_OK) nr.round_ns = round_rate(err, &st);
    /* The baseline: this process after BLAS has run (its thread buffers are resident), less
     * nothing else of size: the calibration buffers are freed by now. */
    double base = rss_mib();
    if (st == SP_OK) st = disk_rates(dir ? dir : ".", &nr.write_mb_s, &nr.read_mb_s, err);
    if (st) return st;
    if (base > 0) nr.base_mb = base;
    snprintf(nr.source, sizeof nr.source, "calibrated");
    *r = nr;
    return SP_OK;
}
