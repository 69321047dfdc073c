/*
 * Checks that the C library's allocator gets memory under the emulator as it would on a board.
 * cross/test-aarch64 runs it under the same qemu command line as the test suite, before the
 * suite, and stops if it fails.
 *
 * Why: qemu 7.2's user mode (Debian 12's qemu-user) maps the dynamic loader and the libraries
 * right after the program's heap, so brk() can grow the heap by only ~40 MB. Past that, a large
 * brk() fails and a smaller one later succeeds; glibc 2.36's malloc then returns NULL with
 * memory to spare (no system call is even tried). `lookout run` with the detector, MobileSAM
 * and LiDAR hit it while loading MobileSAM ("failed to allocate Layout { size: 524288 }"). On a
 * board the kernel maps libraries far from the heap and brk() does not fail this way. qemu's
 * `-R` (a reserved guest address space) lays out the guest as a kernel does.
 *
 * The check: allocations of 1 byte to 4 MB in a seeded random order, a quarter of them large,
 * freed at random, with the mmap threshold `lookout run` sets (src/heap.rs) and malloc_trim
 * every 5000 steps. Under qemu 7.2 without `-R` it gets NULL at step 79 with 42 MB held; natively
 * and with `-R` it ends with ~110 MB held.
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t state = 42;

static uint64_t next(void) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 33;
}

int main(void) {
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    enum { SLOTS = 400, STEPS = 200000 };
    void *slot[SLOTS] = {0};
    size_t held[SLOTS] = {0};
    size_t total = 0;
    for (long step = 0; step < STEPS; step++) {
        int k = next() % SLOTS;
        if (slot[k]) {
            free(slot[k]);
            total -= held[k];
            slot[k] = NULL;
            continue;
        }
        size_t size = next() % 4 == 0 ? next() % (4 << 20) + 1 : next() % 65536 + 1;
        void *p = malloc(size);
        if (!p) {
            fprintf(stderr,
                    "heap-check: malloc(%zu) returned NULL at step %ld with %zu MB held: the "
                    "emulator's heap does not behave as a board's (see cross/heap-check.c)\n",
                    size, step, total >> 20);
            return 1;
        }
        memset(p, 1, size);
        slot[k] = p;
        held[k] = size;
        total += size;
        if (step % 5000 == 0) malloc_trim(0);
    }
    printf("heap-check: %d allocations and frees, %zu MB held at the end\n", STEPS, total >> 20);
    return 0;
}
