#include "cchecksum.h"
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* Four independent 64-bit accumulators over 32 octets a round, then the tail. */
static uint64_t add_portable(const uint8_t *p, size_t len, uint64_t sum) {
    uint64_t a = 0, b = 0, c = 0, d = 0;
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, 32);
        a += (w[0] & 0xFFFFFFFFu) + (w[0] >> 32);
        b += (w[1] & 0xFFFFFFFFu) + (w[1] >> 32);
        c += (w[2] & 0xFFFFFFFFu) + (w[2] >> 32);
        d += (w[3] & 0xFFFFFFFFu) + (w[3] >> 32);
    }
    sum += a + b + c + d;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        sum += (w & 0xFFFFFFFFu) + (w >> 32);
    }
    if (i + 4 <= len) { uint32_t w; memcpy(&w, p + i, 4); sum += w; i += 4; }
    if (i + 2 <= len) { uint16_t w; memcpy(&w, p + i, 2); sum += w; i += 2; }
    if (i < len) sum += p[i];
    return sum;
}

static uint64_t copy_portable(uint8_t *d, const uint8_t *p, size_t len, uint64_t sum) {
    memcpy(d, p, len);
    return add_portable(d, len, sum);
}

#if defined(__x86_64__)
/* The same words, eight 32-bit halves a register: each 64-bit lane adds its two halves. With `d`,
 * each 64-octet step is also stored there (a copy and its sum in one pass); the tail goes
 * through the portable code. */
__attribute__((target("avx2")))
static uint64_t walk_avx2(uint8_t *d, const uint8_t *p, size_t len, uint64_t sum) {
    const __m256i low = _mm256_set1_epi64x(0xFFFFFFFF);
    __m256i x0 = _mm256_setzero_si256(), x1 = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 64 <= len; i += 64) {
        __m256i u = _mm256_loadu_si256((const __m256i *)(p + i));
        __m256i v = _mm256_loadu_si256((const __m256i *)(p + i + 32));
        if (d) {
            _mm256_storeu_si256((__m256i *)(d + i), u);
            _mm256_storeu_si256((__m256i *)(d + i + 32), v);
        }
        x0 = _mm256_add_epi64(x0, _mm256_add_epi64(_mm256_and_si256(u, low), _mm256_srli_epi64(u, 32)));
        x1 = _mm256_add_epi64(x1, _mm256_add_epi64(_mm256_and_si256(v, low), _mm256_srli_epi64(v, 32)));
    }
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, _mm256_add_epi64(x0, x1));
    sum += lanes[0] + lanes[1] + lanes[2] + lanes[3];
    return d ? copy_portable(d + i, p + i, len - i, sum) : add_portable(p + i, len - i, sum);
}

static uint64_t add_avx2(const uint8_t *p, size_t len, uint64_t sum) { return walk_avx2(NULL, p, len, sum); }
static uint64_t copy_avx2(uint8_t *d, const uint8_t *p, size_t len, uint64_t sum) { return walk_avx2(d, p, len, sum); }
#endif

typedef uint64_t (*adder)(const uint8_t *, size_t, uint64_t);
typedef uint64_t (*copier)(uint8_t *, const uint8_t *, size_t, uint64_t);

/* Both chosen once for the CPU; a benign race: every thread chooses the same. */
static adder chosen_add;
static copier chosen_copy;

static void choose(void) {
    adder a = add_portable;
    copier c = copy_portable;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) { a = add_avx2; c = copy_avx2; }
#endif
    __atomic_store_n(&chosen_copy, c, __ATOMIC_RELAXED);
    __atomic_store_n(&chosen_add, a, __ATOMIC_RELAXED);
}

uint64_t vn_csum_add(const void *p, size_t len, uint64_t initial) {
    adder f = __atomic_load_n(&chosen_add, __ATOMIC_RELAXED);
    if (!f) { choose(); f = __atomic_load_n(&chosen_add, __ATOMIC_RELAXED); }
    return f((const uint8_t *)p, len, initial);
}

uint64_t vn_csum_copy(void *dst, const void *src, size_t len, uint64_t initial) {
    copier f = __atomic_load_n(&chosen_copy, __ATOMIC_RELAXED);
    if (!f) { choose(); f = __atomic_load_n(&chosen_copy, __ATOMIC_RELAXED); }
    return f((uint8_t *)dst, (const uint8_t *)src, len, initial);
}
