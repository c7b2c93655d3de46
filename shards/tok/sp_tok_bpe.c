/* sp_tok_bpe.c — the BPE merge engine shared by every tokenizer source.
 *
 * Symbols: n initial ids in a doubly linked list (arrays id/prev/next/alive, index = original
 * position). Candidates: a binary min-heap of (rank, left position, left id, right id). A pop
 * is valid when the left symbol is alive and it and its right neighbour still hold the ids the
 * entry was made for; otherwise it is stale and dropped (lazy invalidation). A merge keeps the
 * left symbol (its position never changes, so "leftmost" stays well defined), kills the right
 * one, and pushes at most two new candidates: (prev, merged) and (merged, next).
 *
 * Cost: n pushes at start, at most 2 per merge and n - 1 merges, so O(n) heap entries and
 * O(n log n) time for the whole text — what a multi-megabyte text with no pre-tokenizer needs.
 */
#include <stdlib.h>
#include <string.h>

#include "shards/tok/sp_tok_internal.h"

#define SP_NONE ((size_t)-1)
#define PAIR_EMPTY UINT64_MAX

/* 16 bytes: the heap is the engine's memory traffic. key = rank << 32 | left position, so one
 * integer compare orders by rank, then leftmost. The right symbol is next[left] at pop time:
 * next[left] only changes when left merges, which changes id[left] (a merged piece is longer,
 * so never the same id), so checking both ids is enough to reject stale entries. */
struct sp_tok_heap_entry {
    uint64_t key;
    int32_t left_id, right_id;
};

/* ---- pair map ------------------------------------------------------------------------ */

static uint64_t pair_key(int32_t left, int32_t right) {
    return (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
}

/* splitmix64 finalizer: pair keys are small consecutive integers, so mix them well. */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

sp_status sp_tok_pairmap_init(sp_tok_pairmap *m, size_t expected, sp_err *err) {
    size_t cap = 16;
    while (cap < 2 * expected + 2) cap *= 2;
    m->slots = sp_malloc(cap * sizeof *m->slots, err, "tokenizer merge map");
    if (!m->slots) return SP_ENOMEM;
    for (size_t i = 0; i < cap; i++) m->slots[i].key = PAIR_EMPTY;
    m->mask = cap - 1;
    m->count = 0;
    return SP_OK;
}

void sp_tok_pairmap_free(sp_tok_pairmap *m) {
    free(m->slots);
    m->slots = NULL;
    m->mask = m->count = 0;
}

void sp_tok_pairmap_set(sp_tok_pairmap *m, int32_t left, int32_t right, int32_t rank,
                        int32_t merged) {
    uint64_t key = pair_key(left, right);
    for (size_t i = (size_t)mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        sp_tok_pair *p = &m->slots[i];
        if (p->key == PAIR_EMPTY) {
            m->count++;
            p->key = key;
        } else if (p->key != key) {
            continue;
        }
        p->rank = rank;
        p->merged = merged;
        return;
    }
}

const sp_tok_pair *sp_tok_pairmap_get(const sp_tok_pairmap *m, int32_t left, int32_t right) {
    if (!m->slots || left < 0 || right < 0) return NULL;
    uint64_t key = pair_key(left, right);
    for (size_t i = (size_t)mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        const sp_tok_pair *p = &m->slots[i];
        if (p->key == PAIR_EMPTY) return NULL;
        if (p->key == key) return p;
    }
}

/* ---- heap ------------------------------------------------------------------------------ */

static int entry_less(const struct sp_tok_heap_entry *a, const struct sp_tok_heap_entry *b) {
    return a->key < b->key;
}

static sp_status heap_push(sp_tok_bpe_scratch *s, struct sp_tok_heap_entry e, sp_err *err) {
    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
        struct sp_tok_heap_entry *h = realloc(s->heap, cap * sizeof *h);
        SP_RETURN_IF(!h, err, SP_ENOMEM, "tokenizer: cannot grow the merge heap to %zu", cap);
        s->heap = h;
        s->heap_cap = cap;
    }
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!entry_less(&e, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = e;
    return SP_OK;
}

static struct sp_tok_heap_entry heap_pop(sp_tok_bpe_scratch *s) {
    struct sp_tok_heap_entry top = s->heap[0];
    struct sp_tok_heap_entry last = s->heap[--s->heap_n];
    size_t n = s->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && entry_less(&s->heap[c + 1], &s->heap[c])) c++;
        if (!entry_less(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0) s->heap[i] = last;
    return top;
}

/* ---- engine -------------------------------------------------------------------------- */

void sp_tok_bpe_scratch_free(sp_tok_bpe_scratch *s) {
    free(s->id);
    free(s->prev);
    free(s->next);
    free(s->alive);
    free(s->heap);
    memset(s, 0, sizeof *s);
}

static sp_status scratch_reserve(sp_tok_bpe_scratch *s, size_t n, sp_err *err) {
    if (n <= s->cap) return SP_OK;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < n) cap *= 2;
    int32_t *id = realloc(s->id, cap * sizeof *id);
    if (id) s->id = id;
    size_t *prev = realloc(s->prev, cap * sizeof *prev);
    if (prev) s->prev = prev;
    size_t *next = realloc(s->next, cap * sizeof *next);
    if (next) s->next = next;
    unsigned char *alive = realloc(s->alive, cap);
    if (alive) s->alive = alive;
    SP_RETURN_IF(!id || !prev || !next || !alive, err, SP_ENOMEM,
                 "tokenizer: cannot allocate %zu merge symbols", cap);
    s->cap = cap;
    return SP_OK;
}

static struct sp_tok_heap_entry make_entry(const sp_tok_pair *p, const sp_tok_bpe_scratch *s,
                                           size_t left, size_t right) {
    struct sp_tok_heap_entry e = {(uint64_t)(uint32_t)p->rank << 32 | (uint64_t)left, s->id[left],
                                  s->id[right]};
    return e;
}

/* Push the candidate (left, right) when the pair has a merge. */
static sp_status push_pair(const sp_tok_pairmap *pm, sp_tok_bpe_scratch *s, size_t left,
                           size_t right, sp_err *err) {
    const sp_tok_pair *p = sp_tok_pairmap_get(pm, s->id[left], s->id[right]);
    return p ? heap_push(s, make_entry(p, s, left, right), err) : SP_OK;
}

/* Floyd's bottom-up heap construction for the initial pairs: O(n) instead of n pushes. */
static void heapify(sp_tok_bpe_scratch *s) {
    for (size_t i = s->heap_n / 2; i-- > 0;) {
        struct sp_tok_heap_entry e = s->heap[i];
        size_t j = i;
        for (;;) {
            size_t c = 2 * j + 1;
            if (c >= s->heap_n) break;
            if (c + 1 < s->heap_n && entry_less(&s->heap[c + 1], &s->heap[c])) c++;
            if (!entry_less(&s->heap[c], &e)) break;
            s->heap[j] = s->heap[c];
            j = c;
        }
        s->heap[j] = e;
    }
}

sp_status sp_tok_bpe_merge(const sp_tok_pairmap *pm, sp_tok_bpe_scratch *s, const int32_t *in,
                           size_t n, sp_tok_ids *out, sp_err *err) {
    if (n == 0) return SP_OK;
    if (n == 1 || pm->count == 0) {
        for (size_t i = 0; i < n; i++) SP_FORWARD(sp_tok_ids_push(out, in[i], err));
        return SP_OK;
    }
    SP_RETURN_IF(n >= UINT32_MAX, err, SP_EUNSUPPORTED,
                 "tokenizer: a word of %zu symbols is too long (limit 2^32 - 1)", n);
    SP_FORWARD(scratch_reserve(s, n, err));
    for (size_t i = 0; i < n; i++) {
        s->id[i] = in[i];
        s->prev[i] = i ? i - 1 : SP_NONE;
        s->next[i] = i + 1 < n ? i + 1 : SP_NONE;
        s->alive[i] = 1;
    }
    /* initial candidates: appended unordered, then heapified */
    s->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        const sp_tok_pair *p = sp_tok_pairmap_get(pm, in[i], in[i + 1]);
        if (!p) continue;
        if (s->heap_n == s->heap_cap) {
            size_t cap = s->heap_cap ? s->heap_cap * 2 : n;
            struct sp_tok_heap_entry *h = realloc(s->heap, cap * sizeof *h);
            SP_RETURN_IF(!h, err, SP_ENOMEM, "tokenizer: cannot grow the merge heap to %zu", cap);
            s->heap = h;
            s->heap_cap = cap;
        }
        s->heap[s->heap_n++] = make_entry(p, s, i, i + 1);
    }
    heapify(s);

    while (s->heap_n > 0) {
        struct sp_tok_heap_entry e = heap_pop(s);
        size_t l = (size_t)(uint32_t)e.key, r = s->next[l];
        if (!s->alive[l] || r == SP_NONE || s->id[l] != e.left_id || s->id[r] != e.right_id)
            continue; /* stale: one side merged since this entry was made */
        const sp_tok_pair *p = sp_tok_pairmap_get(pm, e.left_id, e.right_id);
        s->id[l] = p->merged;
        s->alive[r] = 0;
        s->next[l] = s->next[r];
        if (s->next[r] != SP_NONE) s->prev[s->next[r]] = l;
        if (s->prev[l] != SP_NONE) SP_FORWARD(push_pair(pm, s, s->prev[l], l, err));
        if (s->next[l] != SP_NONE) SP_FORWARD(push_pair(pm, s, l, s->next[l], err));
    }
    /* symbol 0 is never the right side of a merge, so it heads the list */
    for (size_t i = 0; i != SP_NONE; i = s->next[i])
        SP_FORWARD(sp_tok_ids_push(out, s->id[i], err));
    return SP_OK;
}
