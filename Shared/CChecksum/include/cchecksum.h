#ifndef VIOLIN_CCHECKSUM_H
#define VIOLIN_CCHECKSUM_H
/* The Internet checksum's inner loop (RFC 1071), pure computation: no syscalls, no state but a
 * function pointer chosen once for the CPU. */
#include <stdint.h>
#include <stddef.h>

/* Adds `len` octets at `p` to a ones' complement accumulator, as 32-bit native-order words
 * summed into 64 bits (a trailing 2 or 1 octets as a native-order 16-bit word or low byte);
 * fold the result to 16 bits. With AVX2 where the CPU has it, 64 octets a step. */
uint64_t vn_csum_add(const void *p, size_t len, uint64_t initial);

/* Copies `len` octets from `src` to `dst` (which must not overlap) and adds them to `initial` as
 * vn_csum_add would: one pass over the data instead of a copy and then a sum. */
uint64_t vn_csum_copy(void *dst, const void *src, size_t len, uint64_t initial);
#endif
