// LD_PRELOAD shim for benchmarks/malloc-count: counts heap allocations made by threads whose
// name starts with TOCK_COUNT_THREADS (default "ntp-", tockd's NTP workers) and prints the
// total to standard error when the process exits. Forwards to glibc's own allocator.
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_ulong counted;
static __thread int is_worker;  // 1 once the thread is known to be a worker

static void count(void) {
    if (is_worker == 1) { atomic_fetch_add_explicit(&counted, 1, memory_order_relaxed); return; }
    // Threads are named after they start, so a thread not (yet) named as a worker is looked
    // at again on every allocation: slow, but exact.
    char name[17] = {0};
    prctl(PR_GET_NAME, name, 0, 0, 0);
    const char *prefix = getenv("TOCK_COUNT_THREADS");
    if (!prefix) prefix = "ntp-";
    if (strncmp(name, prefix, strlen(prefix)) == 0) {
        is_worker = 1;
        atomic_fetch_add_explicit(&counted, 1, memory_order_relaxed);
    }
}

void *malloc(size_t n) { count(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { count(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { count(); return __libc_realloc(p, n); }
int posix_memalign(void **p, size_t a, size_t n) {
    count();
    void *r = __libc_memalign(a, n);
    if (!r) return 12;  // ENOMEM
    *p = r;
    return 0;
}
void *aligned_alloc(size_t a, size_t n) { count(); return __libc_memalign(a, n); }
void *memalign(size_t a, size_t n) { count(); return __libc_memalign(a, n); }

__attribute__((destructor)) static void report(void) {
    char line[96];
    int len = snprintf(line, sizeof line, "malloc-count: worker allocations %lu\n", atomic_load(&counted));
    if (write(2, line, len) < 0) { }
}
