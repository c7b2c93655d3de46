/* sp_search_out.c — the files `search` writes (see sp_search.h), rank 0 only. Each goes to
 * "<path>.tmp" first and is renamed, and MAP itself is renamed last, so a MAP that exists is
 * complete and matches its companions. */
#include "pipeline/search/sp_search_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shards/sp_model.h"

static sp_status open_tmp(const char *path, char *tmp, size_t cap, FILE **f, sp_err *err) {
    int n = snprintf(tmp, cap, "%s.tmp", path);
    SP_RETURN_IF(n < 0 || (size_t)n >= cap, err, SP_EINVAL, "%s: path too long", path);
    *f = fopen(tmp, "w");
    SP_RETURN_IF(!*f, err, SP_EIO, "%s: cannot write: %s", tmp, strerror(errno));
    return SP_OK;
}

/* Close, fsync and rename tmp to path; on any failure remove tmp. */
static sp_status commit_tmp(FILE *f, const char *tmp, const char *path, sp_err *err) {
    int bad = ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0;
    int e = errno;
    if (fclose(f) != 0) bad = 1;
    if (bad || rename(tmp, path) != 0) {
        if (!bad) e = errno;
        unlink(tmp);
        return sp_err_set(err, SP_EIO, "%s: cannot write: %s", path, strerror(e));
    }
    return SP_OK;
}

sp_status sp_search_check_out(const char *map, sp_err *err) {
    /* Issue 21: a typo in --out used to show only when the map was written, after the whole
     * search. Create (and remove) the temporary file the map is written through: the same
     * directory, the same permissions, the same file system. */
    char tmp[4200];
    FILE *f = NULL;
    SP_RETURN_IF(!map || !*map, err, SP_EINVAL, "search: --out is required");
    struct stat sb;
    SP_RETURN_IF(stat(map, &sb) == 0 && S_ISDIR(sb.st_mode), err, SP_EINVAL,
                 "search: --out %s: is a directory (--out names the map file)", map);
    sp_status st = open_tmp(map, tmp, sizeof tmp, &f, err);
    if (st) return sp_err_prefix(err, "search: --out %s cannot be written", map);
    fclose(f);
    unlink(tmp);
    return SP_OK;
}

static sp_status write_evopress(const sp_search_state *s, const char *path, sp_err *err) {
    char tmp[4200];
    FILE *f;
    SP_FORWARD(open_tmp(path, tmp, sizeof tmp, &f, err));
    for (int m = 0; m < s->space->n; m++) {
        char name[128];
        sp_seval_module_name(m, name, sizeof name);
        fprintf(f, "%s: %d\n", name, s->space->levels[s->parent[m]]);
    }
    return commit_tmp(f, tmp, path, err);
}

/* One rect per module: x = layer, y = kind; colour by bits (low = warm, high = cool). */
static sp_status write_svg(const sp_search_state *s, const char *path, sp_err *err) {
    static const char *PAL[9] = {"#000", "#000", "#d73027", "#fc8d59", "#fee090", "#e0f3f8",
                                 "#91bfdb", "#4575b4", "#313695"};
    int L = s->space->n / SP_MOD_COUNT, cw = L > 60 ? 8 : 16, ch = 18, x0 = 110, y0 = 40;
    int W = x0 + L * cw + 20, H = y0 + SP_MOD_COUNT * ch + 60;
    char tmp[4200];
    FILE *f;
    SP_FORWARD(open_tmp(path, tmp, sizeof tmp, &f, err));
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\" font-size=\"11\">\n", W, H);
    fprintf(f, "<text x=\"10\" y=\"20\" font-size=\"13\">bits per module: target %.4f, "
               "average %.4f stored bits/weight, KL %.5f</text>\n", s->o->target_bits,
            sp_sgenome_avg(s->space, s->parent), s->parent_fitness);
    for (int k = 0; k < SP_MOD_COUNT; k++)
        fprintf(f, "<text x=\"10\" y=\"%d\">%s</text>\n", y0 + k * ch + 13, sp_module_suffix(k));
    for (int m = 0; m < s->space->n; m++) {
        int l = m / SP_MOD_COUNT, k = m % SP_MOD_COUNT, b = s->space->levels[s->parent[m]];
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\" stroke=\"#fff\">"
                   "<title>layer %d %s: %d bits</title></rect>\n", x0 + l * cw, y0 + k * ch, cw,
                ch, PAL[b], l, sp_module_suffix(k), b);
    }
    int ly = y0 + SP_MOD_COUNT * ch + 20;
    fprintf(f, "<text x=\"10\" y=\"%d\">layer 0 → %d</text>\n", ly + 12, L - 1);
    for (int i = 0; i < s->space->n_levels; i++) {
        int b = s->space->levels[i], lx = x0 + i * 60;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"14\" fill=\"%s\"/><text x=\"%d\" "
                   "y=\"%d\">%d bits</text>\n", lx, ly, PAL[b], lx + 18, ly + 12, b);
    }
    fprintf(f, "</svg>\n");
    return commit_tmp(f, tmp, path, err);
}

static sp_status write_history(const sp_search_state *s, const char *path, sp_err *err) {
    char tmp[4200];
    FILE *f;
    SP_FORWARD(open_tmp(path, tmp, sizeof tmp, &f, err));
    fprintf(f, "{\"target_bits\": %.6f, \"generations\": [", s->o->target_bits);
    for (int g = 0; g < s->n_hist; g++) {
        char pr[48] = "null", rho[48] = "null";
        if (!isnan(s->hist[g].predicted)) snprintf(pr, sizeof pr, "%.17g", s->hist[g].predicted);
        if (!isnan(s->hist[g].rho)) snprintf(rho, sizeof rho, "%.17g", s->hist[g].rho);
        fprintf(f, "%s\n  {\"generation\": %d, \"fitness_kl\": %.17g, \"predicted_kl\": %s, "
                   "\"surrogate_rho\": %s, \"accepted\": %s, \"layer_evaluations\": %lld, "
                   "\"layer_evaluations_full\": %lld}", g ? "," : "", g + 1, s->hist[g].fitness,
                pr, rho, s->hist[g].accepted ? "true" : "false", (long long)s->hist[g].evals,
                (long long)s->hist[g].full);
    }
    fprintf(f, "\n]}\n");
    return commit_tmp(f, tmp, path, err);
}

static sp_status write_map(const sp_search_state *s, const char *path, sp_err *err) {
    char tmp[4200];
    FILE *f;
    SP_FORWARD(open_tmp(path, tmp, sizeof tmp, &f, err));
    fprintf(f, "# shardpress search (%s): target %.6f, average %.6f stored bits per weight "
               "(codes + fp16 scale + zero per group; a GGUF-type level: its blocks), KL %.6g\n",
            sp_search_method_name(s->o->method), s->o->target_bits,
            sp_sgenome_avg(s->space, s->parent), s->parent_fitness);
    for (int m = 0; m < s->space->n; m++) {
        char name[128];
        sp_seval_module_name(m, name, sizeof name);
        fprintf(f, "%s %d\n", name, s->space->levels[s->parent[m]]);
    }
    return commit_tmp(f, tmp, path, err);
}

sp_status sp_search_write_outputs(const sp_search_state *s, sp_err *err) {
    const char *map = s->o->out_map;
    char p[4200];
    snprintf(p, sizeof p, "%s.evopress.txt", map);
    SP_FORWARD(write_evopress(s, p, err));
    snprintf(p, sizeof p, "%s.svg", map);
    SP_FORWARD(write_svg(s, p, err));
    snprintf(p, sizeof p, "%s.history.json", map);
    SP_FORWARD(write_history(s, p, err));
    return write_map(s, map, err);
}
