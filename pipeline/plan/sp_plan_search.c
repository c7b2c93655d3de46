/* sp_plan_search.c — memory and time of `shardpress search` (see sp_plan.h). Mirrors
 * pipeline/search/sp_seval.c: when its allocations change, this must follow. */
#include <math.h>
#include <string.h>

#include "pipeline/plan/sp_plan.h"

void sp_plan_search_opts_default(sp_plan_search_opts *o) {
    memset(o, 0, sizeof *o);
    o->ranks = 1;
    o->generations = 150;
    o->offspring = 128;
    o->n_stages = 3;
    o->stages[0] = 2048; o->stages[1] = 16384; o->stages[2] = 131072;
    o->survivors[0] = 16; o->survivors[1] = 4; o->survivors[2] = 1;
    o->topk = 64;
    o->n_levels = 6;
}

/* Expected fraction of the layers a mutated candidate runs with the prefix cache. */
static double cache_fraction(void) {
    return 5.0 / 9.0 * 2.0 / 3.0 + 3.0 / 9.0 * 4.0 / 5.0 + 1.0 / 9.0 * 6.0 / 7.0;
}

sp_status sp_plan_search_predict(const sp_plan_model *m, const sp_plan_search_opts *o,
                                 const sp_plan_rates *r, sp_plan_search_result *res, sp_err *err) {
    memset(res, 0, sizeof *res);
    const sp_config *c = &m->cfg;
    SP_RETURN_IF(o->ranks < 1 || o->ctx < 2 || o->n_stages < 1 || o->n_stages > 8, err,
                 SP_EINVAL, "plan --search: bad ranks, ctx or stages");
    double T = o->ctx, D = c->dim, V = c->vocab_size, L = c->n_layers, R = o->ranks;
    double K = o->topk < V ? o->topk : V, rec = 8 * K + 4, MIB = 1048576.0;
    double pool = o->pool_windows > 0 ? o->pool_windows
                                      : ceil((double)o->stages[o->n_stages - 1] / T);
    double bflops, belems, block_f32, scratch;
    sp_plan_block_cost(m, o->ctx, &bflops, &belems);
    sp_plan_block_bytes(m, o->ctx, &block_f32, &scratch);
    /* memory: sp_seval_open + the largest chunk of sp_seval_run */
    res->blocks = 2 * block_f32;
    res->scratch = scratch;
    res->head = 4 * (V * D + D) + 4 * 64 * (V + D);
    res->pool = 4 * pool * T;
    res->reference = pool * (T - 1) * rec;
    double items_max = 0, wins_max = 0, n = o->offspring, f = cache_fraction(), gen_s = 0;
    double sg = r->sgemm_gflops * 1e9, elem_s = r->round_ns * 1e-9;
    double per_block = bflops / sg + belems * elem_s;                 /* one window-layer */
    double head = (2 * T * D * V) / sg + T * V * 4 * elem_s;          /* head + softmax/KL */
    double qbytes = m->block_bytes / (m->dtype == SP_DTYPE_F32 ? 4.0 : 2.0) * 5.0 / 8.0;
    for (int s = 0; s < o->n_stages; s++) {
        double w = ceil((double)o->stages[s] / T);
        if (w > pool) w = pool;
        double cands = s == 0 ? n : o->survivors[s - 1] + (s == o->n_stages - 1);
        double items = cands * w, my_items = ceil(items / R), my_wins = ceil(w / R);
        if (my_wins > my_items) my_wins = my_items;
        if (my_items > items_max) items_max = my_items;
        if (my_wins > wins_max) wins_max = my_wins;
        res->layer_evals_gen += items * L * f + w * L;
        res->layer_evals_full_gen += items * L;
        double loads = (cands < my_items ? cands : my_items) * L;     /* block reads */
        gen_s += (my_items * L * f + my_wins * L) * per_block + my_items * head +
                 loads * (qbytes / (r->read_mb_s * 1e6) + block_f32 / 4 * elem_s);
        if (s == 0) n = cands;
    }
    /* the sensitivity pass: every (module, level) from its layer on, one dense pass per window */
    double NLv = o->n_levels > 0 ? o->n_levels : 6;
    double ws = 0;
    if (o->sens_tokens >= 0) {
        ws = ceil((double)(o->sens_tokens > 0 ? o->sens_tokens : o->stages[0]) / T);
        if (ws > pool) ws = pool;
        double per_w = 7.0 * NLv * L * (L + 1) / 2.0 + (L - 1);
        res->layer_evals_sensitivity = ws * per_w;
        double cands = 7.0 * NLv * L;
        double my_items = ceil(ws * cands / R);
        /* a rank's items: whole windows when ws >= R, else a share of one window's candidates */
        double my_evals = ws >= R ? ceil(ws / R) * per_w : my_items * (L + 1) / 2.0 + (L - 1);
        double loads = (cands < my_items ? cands : my_items) * (L + 1) / 2.0;
        res->t_sensitivity = my_evals * per_block + my_items * head +
                             loads * (qbytes / (r->read_mb_s * 1e6) + block_f32 / 4 * elem_s);
    }
    /* the lazy dense reference: the windows drawn at least once */
    double miss = ws > 0 ? 1.0 - ws / pool : 1.0;
    for (int s = 0; s < o->n_stages; s++) {
        double w = ceil((double)o->stages[s] / T);
        if (w > pool) w = pool;
        miss *= pow(1.0 - w / pool, o->generations + 1);
    }
    res->reference_windows = pool * (1.0 - miss);
    res->mapped = L * m->block_bytes + m->embed_bytes + m->head_bytes;
    double states = (items_max + wins_max) * T * D * 4;
    res->states = states < (double)(1 << 30) ? states : (double)(1 << 30);
    res->heap = r->base_mb * MIB + res->blocks + res->scratch + res->head + res->pool +
                res->reference + res->states;
    /* the dense reference phase adds its own head and one window's states */
    double ref_phase = r->base_mb * MIB + res->blocks + res->scratch + 2 * res->head + res->pool +
                       res->reference + T * D * 4;
    if (ref_phase > res->heap) res->heap = ref_phase;
    res->rss = res->heap + res->mapped;
    res->t_reference = ceil(res->reference_windows / R) * (L * per_block + head);
    res->t_generation = gen_s;
    res->t_total = res->t_reference + res->t_sensitivity + o->generations * gen_s;
    return SP_OK;
}
