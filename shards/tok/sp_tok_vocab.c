/* sp_tok_vocab.c — piece storage and the string -> id map of the tokenizer.
 *
 * All pieces live in one NUL-separated blob; the map's keys point into it, so the map owns no
 * strings. Open addressing with linear probing, load factor <= 1/2.
 */
#include <stdlib.h>
#include <string.h>

#include "shards/tok/sp_tok_internal.h"

sp_status sp_tok_ids_push(sp_tok_ids *a, int32_t id, sp_err *err) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        SP_RETURN_IF(!v, err, SP_ENOMEM, "tokenizer: cannot grow the id buffer to %zu ids", cap);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return SP_OK;
}

/* FNV-1a, 64-bit: good enough spread for short byte strings. */
static uint64_t str_hash(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static size_t table_size(size_t expected) {
    size_t cap = 16;
    while (cap < 2 * expected + 2) cap *= 2;
    return cap;
}

sp_status sp_tok_strmap_init(sp_tok_strmap *m, size_t expected, sp_err *err) {
    size_t cap = table_size(expected);
    m->slots = sp_malloc(cap * sizeof *m->slots, err, "tokenizer vocabulary map");
    if (!m->slots) return SP_ENOMEM;
    for (size_t i = 0; i < cap; i++) m->slots[i].id = -1;
    m->mask = cap - 1;
    m->count = 0;
    return SP_OK;
}

void sp_tok_strmap_free(sp_tok_strmap *m) {
    free(m->slots);
    m->slots = NULL;
    m->mask = m->count = 0;
}

/* The table is sized for the pieces it will hold (init's expected), so it never grows. */
void sp_tok_strmap_put(sp_tok_strmap *m, const char *key, size_t len, int32_t id,
                       int32_t *existing) {
    size_t i = (size_t)str_hash(key, len) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        sp_tok_slot *s = &m->slots[i];
        if (s->id < 0) {
            s->key = key;
            s->len = (uint32_t)len;
            s->id = id;
            m->count++;
            if (existing) *existing = -1;
            return;
        }
        if (s->len == len && memcmp(s->key, key, len) == 0) {
            if (existing) *existing = s->id;
            return;
        }
    }
}

int32_t sp_tok_strmap_get(const sp_tok_strmap *m, const char *key, size_t len) {
    if (!m->slots) return -1;
    size_t i = (size_t)str_hash(key, len) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        const sp_tok_slot *s = &m->slots[i];
        if (s->id < 0) return -1;
        if (s->len == len && memcmp(s->key, key, len) == 0) return s->id;
    }
}

sp_status sp_tok_vocab_alloc(sp_tokenizer *t, int n_vocab, size_t blob_bytes, sp_err *err) {
    t->n_vocab = n_vocab;
    t->blob = sp_malloc(blob_bytes + 1, err, "tokenizer pieces");
    t->off = sp_calloc((size_t)n_vocab, sizeof *t->off, err, "tokenizer piece offsets");
    t->len = sp_calloc((size_t)n_vocab, sizeof *t->len, err, "tokenizer piece lengths");
    t->has = sp_calloc((size_t)n_vocab, 1, err, "tokenizer piece flags");
    t->special = sp_calloc((size_t)n_vocab, 1, err, "tokenizer special flags");
    if (!t->blob || !t->off || !t->len || !t->has || !t->special) return SP_ENOMEM;
    t->blob[blob_bytes] = '\0';
    return SP_OK;
}

void sp_tok_vocab_set(sp_tokenizer *t, int32_t id, const char *s, size_t len, size_t *blob_used) {
    memcpy(t->blob + *blob_used, s, len);
    t->blob[*blob_used + len] = '\0';
    t->off[id] = *blob_used;
    t->len[id] = (uint32_t)len;
    t->has[id] = 1;
    *blob_used += len + 1;
}

sp_status sp_tok_vocab_index(sp_tokenizer *t, sp_err *err) {
    SP_FORWARD(sp_tok_strmap_init(&t->vocab, (size_t)t->n_vocab, err));
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!t->has[id]) continue;
        sp_tok_strmap_put(&t->vocab, t->blob + t->off[id], t->len[id], id, NULL);
    }
    return SP_OK;
}
