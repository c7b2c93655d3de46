/* sp_rng.h — splitmix64, the one pseudo-random generator of shardpress and its tests.
 *
 * Contract: a state s (any uint64_t, 0 included) gives the same sequence on every machine and
 * compiler: sp_rng_next adds the golden-ratio increment 0x9E3779B97F4A7C15 to s and returns
 * the splitmix64 finaliser of it (Steele, Lea & Flood, "Fast splittable pseudorandom number
 * generators", OOPSLA 2014). It is not cryptographic; it is for reproducible draws (rotation
 * matrices, window picks, test inputs). Everything seeded from it is a pure function of the seed,
 * which is what keeps outputs byte-identical for any rank count.
 *
 * Header-only (static inline): the hot loops that draw millions of values inline it. */
#ifndef SP_RNG_H
#define SP_RNG_H

#include <stdint.h>

/* The splitmix64 finaliser: a bijection of 64-bit words with good avalanche. */
static inline uint64_t sp_rng_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Advance *s and return the next 64 random bits. */
static inline uint64_t sp_rng_next(uint64_t *s) { return sp_rng_mix(*s += 0x9E3779B97F4A7C15ull); }

/* Uniform in [0, 1) with 53 random bits. */
static inline double sp_rng_unit(uint64_t *s) {
    return (double)(sp_rng_next(s) >> 11) / 9007199254740992.0;
}

/* Uniform in (0, 1): never 0, so log() of it is finite (Box–Muller). */
static inline double sp_rng_unit_open(uint64_t *s) {
    return ((double)(sp_rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
}

#endif
