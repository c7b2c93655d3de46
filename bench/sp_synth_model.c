/* sp_synth_model.c — write a synthetic Llama model directory with random weights at real
 * shapes, for benchmarks and for checking `shardpress plan` against real runs.
 *
 *   sp_synth_model --out DIR --hidden H --intermediate I --layers L --heads A --kv-heads K
 *                  --vocab V [--dtype bf16|f16|f32] [--seed S] [--max-pos P] [--tied]
 *                  [--shard-mb M] [--tokenizer-dir DIR] [--qwen2]
 *
 * Output: DIR/config.json and DIR/model.safetensors, or, when the weights exceed --shard-mb
 * (default 2048 MiB), DIR/model-0000k-of-0000n.safetensors shards and
 * DIR/model.safetensors.index.json. With --vocab 512 the bundled stories260K tokenizer files are
 * copied too, so the model can be calibrated and evaluated on text; other vocabularies get no
 * tokenizer (plan, and RTN quantization, do not need one).
 *
 * Weights: matrices [out, in] ~ N(0, 1/in) (Irwin–Hall sum of 4 uniforms, close enough to
 * normal for this), so every linear layer keeps the scale of its input; the embedding ~
 * N(0, 1); norms are 1 ± 5 %. Each tensor has its own stream seeded from --seed and its name,
 * so the values do not depend on how the tensors are sharded. Peak memory: one shard.
 * --qwen2: Qwen2ForCausalLM with q/k/v biases ~ N(0, 0.3²) (a GQA model with biases, issue 23).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/sp_error.h"
#include "pipeline/sp_outdir.h"
#include "shards/sp_config.h"
#include "shards/sp_model.h"
#include "shards/sp_safetensors.h"
#include "common/sp_rng.h"

#define MAX_NAME 128

typedef struct {
    char name[MAX_NAME];
    int ndim;
    int64_t shape[2];
    double stddev;  /* 0: a norm weight (1 ± 5 %) */
    int shard;      /* 0-based shard index        */
} synth_tensor;

/* FNV-1a of the tensor name: the per-tensor stream. */
static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Uniform in [0, 1) from the top 24 bits. */
static float unif(uint64_t *s) { return (float)(sp_rng_next(s) >> 40) * (1.0f / 16777216.0f); }

static void fill(void *dst, sp_dtype dt, const synth_tensor *t, uint64_t seed) {
    uint64_t s = seed ^ name_hash(t->name);
    size_t n = (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1);
    /* Sum of 4 uniforms: mean 2, variance 4/12 = 1/3; scaled to unit variance. */
    const float k = (float)(t->stddev * 1.7320508075688772);
    for (size_t i = 0; i < n; i++) {
        float v;
        if (t->stddev == 0)
            v = 1.0f + 0.1f * (unif(&s) - 0.5f);
        else
            v = (unif(&s) + unif(&s) + unif(&s) + unif(&s) - 2.0f) * k;
        if (dt == SP_DTYPE_F32) ((float *)dst)[i] = v;
        else if (dt == SP_DTYPE_BF16) ((uint16_t *)dst)[i] = sp_f32_to_bf16(v);
        else ((uint16_t *)dst)[i] = sp_f32_to_f16(v);
    }
}

static size_t tensor_bytes(const synth_tensor *t, size_t esz) {
    return (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1) * esz;
}

static void add(synth_tensor *ts, int *n, const char *name, int64_t rows, int64_t cols,
                double stddev) {
    synth_tensor *t = &ts[(*n)++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = cols > 0 ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols > 0 ? cols : 1;
    t->stddev = stddev;
}

static sp_status write_index(const char *out, const synth_tensor *ts, int n, int nshards,
                             uint64_t total, sp_err *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", out);
    FILE *f = fopen(path, "w");
    SP_RETURN_IF(!f, err, SP_EIO, "%s: cannot create: %s", path, strerror(errno));
    fprintf(f, "{\n  \"metadata\": {\"total_size\": %llu},\n  \"weight_map\": {\n",
            (unsigned long long)total);
    for (int i = 0; i < n; i++)
        fprintf(f, "    \"%s\": \"model-%05d-of-%05d.safetensors\"%s\n", ts[i].name,
                ts[i].shard + 1, nshards, i + 1 < n ? "," : "");
    fprintf(f, "  }\n}\n");
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    SP_RETURN_IF(bad, err, SP_EIO, "%s: write failed", path);
    return SP_OK;
}

static sp_status write_model(const char *out, const sp_config *c, sp_dtype dt, uint64_t seed,
                             size_t shard_bytes, sp_err *err) {
    const int L = c->n_layers;
    const int64_t D = c->dim, F = c->hidden_dim, V = c->vocab_size;
    const int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    const size_t esz = sp_dtype_size(dt);
    int n = 0, cap = 12 * L + 3;
    synth_tensor *ts = sp_calloc((size_t)cap, sizeof *ts, err, "tensor list");
    if (!ts) return SP_ENOMEM;
    char name[MAX_NAME];
    add(ts, &n, "model.embed_tokens.weight", V, D, 1.0);
    for (int l = 0; l < L; l++) {
        static const char *attn[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
        static const char *mlp[3] = {"gate_proj", "up_proj", "down_proj"};
        const int64_t rows_a[4] = {q, kv, kv, D}, cols_a[4] = {D, D, D, q};
        const int64_t rows_m[3] = {F, F, D}, cols_m[3] = {D, D, F};
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        add(ts, &n, name, D, 0, 0);
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.weight", l, attn[i]);
            add(ts, &n, name, rows_a[i], cols_a[i], 1.0 / sqrt((double)cols_a[i]));
            if (c->qkv_bias && i < 3) {
                snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.bias", l, attn[i]);
                add(ts, &n, name, rows_a[i], 0, 0.3);
            }
        }
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        add(ts, &n, name, D, 0, 0);
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "model.layers.%d.mlp.%s.weight", l, mlp[i]);
            add(ts, &n, name, rows_m[i], cols_m[i], 1.0 / sqrt((double)cols_m[i]));
        }
    }
    add(ts, &n, "model.norm.weight", D, 0, 0);
    if (!c->tie_embeddings) add(ts, &n, "lm_head.weight", V, D, 1.0 / sqrt((double)D));

    /* Shards in file order: a new shard starts when the next tensor would overflow one. */
    int nshards = 1;
    uint64_t total = 0, cur = 0;
    for (int i = 0; i < n; i++) {
        size_t b = tensor_bytes(&ts[i], esz);
        if (cur > 0 && cur + b > shard_bytes) {
            nshards++;
            cur = 0;
        }
        ts[i].shard = nshards - 1;
        cur += b;
        total += b;
    }
    sp_status st = SP_OK;
    sp_st_write_tensor *wt = sp_calloc((size_t)n, sizeof *wt, err, "tensor list");
    void **bufs = sp_calloc((size_t)n, sizeof *bufs, err, "tensor buffers");
    if (!wt || !bufs) st = SP_ENOMEM;
    for (int s = 0, first = 0; st == SP_OK && s < nshards; s++) {
        int cnt = 0;
        while (first + cnt < n && ts[first + cnt].shard == s) {
            synth_tensor *t = &ts[first + cnt];
            bufs[cnt] = sp_malloc(tensor_bytes(t, esz), err, t->name);
            if (!bufs[cnt]) {
                st = SP_ENOMEM;
                break;
            }
            fill(bufs[cnt], dt, t, seed);
            wt[cnt] = (sp_st_write_tensor){.name = t->name, .dtype = dt, .ndim = t->ndim,
                                           .shape = {t->shape[0], t->shape[1]},
                                           .data = bufs[cnt]};
            if (t->ndim == 1) wt[cnt].shape[1] = 0;
            cnt++;
        }
        if (st == SP_OK) {
            char path[PATH_MAX];
            if (nshards == 1)
                snprintf(path, sizeof path, "%s/model.safetensors", out);
            else
                snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", out, s + 1,
                         nshards);
            st = sp_safetensors_write(path, wt, (size_t)cnt, "{\"format\": \"pt\"}", err);
        }
        for (int i = 0; i < cnt; i++) {
            free(bufs[i]);
            bufs[i] = NULL;
        }
        first += cnt;
    }
    if (st == SP_OK && nshards > 1) st = write_index(out, ts, n, nshards, total, err);
    free(bufs);
    free(wt);
    free(ts);
    return st;
}

static const char *USAGE =
    "usage: sp_synth_model --out DIR --hidden H --intermediate I --layers L --heads A\n"
    "                      --kv-heads K --vocab V [--dtype bf16|f16|f32] [--seed S]\n"
    "                      [--max-pos P] [--tied] [--shard-mb M] [--tokenizer-dir DIR]\n"
    "                      [--qwen2]\n"
    "\n"
    "Write a Llama model directory with random weights (see the top of bench/sp_synth_model.c).\n"
    "  --dtype        storage dtype (bf16)\n"
    "  --max-pos      max_position_embeddings (4096)\n"
    "  --tied         tie lm_head to the embedding (default: separate lm_head)\n"
    "  --qwen2        Qwen2ForCausalLM: q/k/v projections with biases\n"
    "  --shard-mb     largest shard before splitting into model-0000k-of-0000n (2048)\n"
    "  --tokenizer-dir where the vocab-512 tokenizer is copied from (default: $SP_MODEL_DIR,\n"
    "                 else <executable>/../models/stories260K)\n";

static int parse_long(const char *opt, const char *v, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || !*v || *end || x < lo || x > hi) {
        fprintf(stderr, "sp_synth_model: %s: '%s' is not an integer in %ld..%ld\n", opt, v, lo, hi);
        return 0;
    }
    *out = x;
    return 1;
}

/* The bundled tokenizer: --tokenizer-dir, $SP_MODEL_DIR, or next to the build directory. */
static void tokenizer_dir(char *buf, size_t cap, const char *given) {
    const char *env = getenv("SP_MODEL_DIR");
    if (given) {
        snprintf(buf, cap, "%s", given);
    } else if (env && *env) {
        snprintf(buf, cap, "%s", env);
    } else {
        char exe[PATH_MAX - 64]; /* room for the suffix below */
        ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[k > 0 ? k : 0] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        snprintf(buf, cap, "%s/../models/stories260K", k > 0 ? exe : ".");
    }
}

int main(int argc, char **argv) {
    const char *out = NULL, *tokdir = NULL;
    long hidden = 0, inter = 0, layers = 0, heads = 0, kvh = 0, vocab = 0, maxpos = 4096;
    long seed = 0, shard_mb = 2048;
    int tied = 0, qwen2 = 0;
    sp_dtype dt = SP_DTYPE_BF16;
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'}, {"hidden", required_argument, 0, 'D'},
        {"intermediate", required_argument, 0, 'F'}, {"layers", required_argument, 0, 'L'},
        {"heads", required_argument, 0, 'A'}, {"kv-heads", required_argument, 0, 'K'},
        {"vocab", required_argument, 0, 'V'}, {"dtype", required_argument, 0, 't'},
        {"seed", required_argument, 0, 's'}, {"max-pos", required_argument, 0, 'P'},
        {"tied", no_argument, 0, 'T'}, {"shard-mb", required_argument, 0, 'M'},
        {"tokenizer-dir", required_argument, 0, 'k'}, {"help", no_argument, 0, 'h'},
        {"qwen2", no_argument, 0, 'q'},
        {0, 0, 0, 0}};
    int ch, ok = 1;
    opterr = 0;
    while (ok && (ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'o': out = optarg; break;
        case 'D': ok = parse_long("--hidden", optarg, 2, 1 << 20, &hidden); break;
        case 'F': ok = parse_long("--intermediate", optarg, 1, 1 << 22, &inter); break;
        case 'L': ok = parse_long("--layers", optarg, 1, 1024, &layers); break;
        case 'A': ok = parse_long("--heads", optarg, 1, 4096, &heads); break;
        case 'K': ok = parse_long("--kv-heads", optarg, 1, 4096, &kvh); break;
        case 'V': ok = parse_long("--vocab", optarg, 1, 1 << 24, &vocab); break;
        case 's': ok = parse_long("--seed", optarg, 0, LONG_MAX, &seed); break;
        case 'P': ok = parse_long("--max-pos", optarg, 2, 1 << 24, &maxpos); break;
        case 'M': ok = parse_long("--shard-mb", optarg, 1, 1L << 30, &shard_mb); break;
        case 'T': tied = 1; break;
        case 'q': qwen2 = 1; break;
        case 'k': tokdir = optarg; break;
        case 't':
            if (!strcmp(optarg, "bf16")) dt = SP_DTYPE_BF16;
            else if (!strcmp(optarg, "f16")) dt = SP_DTYPE_F16;
            else if (!strcmp(optarg, "f32")) dt = SP_DTYPE_F32;
            else {
                fprintf(stderr, "sp_synth_model: --dtype: '%s' is not bf16, f16 or f32\n", optarg);
                ok = 0;
            }
            break;
        case 'h': fputs(USAGE, stdout); return 0;
        default:
            fprintf(stderr, "sp_synth_model: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            ok = 0;
        }
    }
    if (!ok) return 2;
    if (!out || !hidden || !inter || !layers || !heads || !kvh || !vocab) {
        fprintf(stderr, "sp_synth_model: --out, --hidden, --intermediate, --layers, --heads, "
                        "--kv-heads and --vocab are required (see --help)\n");
        return 2;
    }
    if (hidden % heads || heads % kvh || (hidden / heads) % 2) {
        fprintf(stderr, "sp_synth_model: --hidden %ld must be a multiple of --heads %ld with an "
                        "even head size, and --heads a multiple of --kv-heads %ld\n",
                hidden, heads, kvh);
        return 2;
    }
    sp_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "%s", qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM");
    c.qkv_bias = qwen2;
    c.dim = (int)hidden;
    c.hidden_dim = (int)inter;
    c.n_layers = (int)layers;
    c.n_heads = (int)heads;
    c.n_kv_heads = (int)kvh;
    c.head_dim = (int)(hidden / heads);
    c.vocab_size = (int)vocab;
    c.max_seq_len = (int)maxpos;
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.tie_embeddings = tied;
    c.bos_id = 1;
    c.eos_id = 2;

    sp_err err = {SP_OK, ""};
    sp_status st = SP_OK;
    if (mkdir(out, 0777) != 0 && errno != EEXIST)
        st = sp_err_set(&err, SP_EIO, "%s: cannot create directory: %s", out, strerror(errno));
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/config.json", out);
    if (st == SP_OK) st = sp_config_save_json(&c, path, NULL, &err);
    if (st == SP_OK) st = write_model(out, &c, dt, (uint64_t)seed, (size_t)shard_mb << 20, &err);
    if (st == SP_OK && vocab == 512) {
        char tdir[PATH_MAX];
        tokenizer_dir(tdir, sizeof tdir, tokdir);
        st = sp_outdir_copy_tokenizer(tdir, out, &err);
    }
    if (st != SP_OK) {
        fprintf(stderr, "sp_synth_model: error: %s\n", err.msg);
        return 1;
    }
    return 0;
}
