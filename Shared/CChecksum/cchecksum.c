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

#if defined(__x86_64__)
/* The same words, eight 32-bit halves a register: each 64-bit lane adds its two halves. */
__attribute__((target("avx2")))
static uint64_t add_avx2(const uint8_t *p, size_t len, uint64_t sum) {
    const __m256i low = _mm256_set1_epi64x(0xFFFFFFFF);
    __m256i x0 = _mm256_setzero_si256(), x1 = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 64 <= len; i += 64) {
        __m256i u = _mm256_loadu_si256((const __m256i *)(p + i));
        __m256i v = _mm256_loadu_si256((const __m256i *)(p + i + 32));
        x0 = _mm256_add_epi64(x0, _mm256_add_epi64(_mm256_and_si256(u, low), _mm256_srli_epi64(u, 32)));
        x1 = _mm256_add_epi64(x1, _mm256_add_epi64(_mm256_and_si256(v, low), _mm256_srli_epi64(v, 32)));
    }
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, _mm256_add_epi64(x0, x1));
    sum += lanes[0] + lanes[1] + lanes[2] + lanes[3];
    return add_portable(p + i, len - i, sum);
}
#endif

typedef uint64_t (*adder)(const uint8_t *, size_t, uint64_t);

static adder choose(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) return add_avx2;
#endif
    return add_portable;
}

uint64_t vn_csum_add(const void *p, size_t len, uint64_t initial) {
    static adder chosen;   /* a benign race: every thread chooses the same */
    adder f = __atomic_load_n(&chosen, __ATOMIC_RELAXED);
    if (!f) { f = choose(); __atomic_store_n(&chosen, f, __ATOMIC_RELAXED); }
    return f((const uint8_t *)p, len, initial);
}
