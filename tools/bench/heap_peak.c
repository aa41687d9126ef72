/* The heap pass's counter, preloaded (LD_PRELOAD) into a process whose Python allocates with malloc
 * (PYTHONMALLOC=malloc) and whose Arrow uses the system pool (ARROW_DEFAULT_MEMORY_POOL=system): then
 * every byte the process allocates, Python's objects, numpy's arrays, Arrow's buffers and the SDKs' C
 * parts alike, passes through these functions, and the peak is exact at every instant, whatever the
 * thread. Sizes are the allocator's usable sizes, counted the same way on the way in and out.
 *
 * The __libc_* entry points are glibc's own allocator: calling them, not dlsym, means no allocation
 * happens before the counter can take it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *ptr);

static int64_t current_bytes;
static int64_t peak_bytes;

static void raise_peak(int64_t now) {
    int64_t seen = __atomic_load_n(&peak_bytes, __ATOMIC_RELAXED);
    while (now > seen &&
           !__atomic_compare_exchange_n(&peak_bytes, &seen, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

/* glibc marks a block it mapped on its own (IS_MMAPPED) in the size word just before the block. */
static int is_mmapped(void *ptr) { return (((size_t *)ptr)[-1] & 2) != 0; }

static void *taken(void *ptr) {
    if (ptr != NULL) {
        raise_peak(__atomic_add_fetch(&current_bytes, (int64_t)malloc_usable_size(ptr), __ATOMIC_RELAXED));
    }
    return ptr;
}

static void given_back(void *ptr) {
    if (ptr != NULL) {
        __atomic_sub_fetch(&current_bytes, (int64_t)malloc_usable_size(ptr), __ATOMIC_RELAXED);
    }
}

void *malloc(size_t size) { return taken(__libc_malloc(size)); }

void *calloc(size_t count, size_t size) { return taken(__libc_calloc(count, size)); }

void free(void *ptr) {
    given_back(ptr);
    __libc_free(ptr);
}

void *realloc(void *ptr, size_t size) {
    int64_t before = ptr != NULL ? (int64_t)malloc_usable_size(ptr) : 0;
    int remapped = ptr != NULL && is_mmapped(ptr);
    void *moved = __libc_realloc(ptr, size);
    if (moved == NULL) {
        if (ptr != NULL && size == 0) {
            __atomic_sub_fetch(&current_bytes, before, __ATOMIC_RELAXED);
        }
        return NULL;
    }
    int64_t after = (int64_t)malloc_usable_size(moved);
    if (moved == ptr || remapped) {
        raise_peak(__atomic_add_fetch(&current_bytes, after - before, __ATOMIC_RELAXED));
    } else {
        /* A move on the heap holds both blocks for the copy; a mapped block is moved by mremap, whose
         * pages change address, not number. */
        raise_peak(__atomic_add_fetch(&current_bytes, after, __ATOMIC_RELAXED));
        __atomic_sub_fetch(&current_bytes, before, __ATOMIC_RELAXED);
    }
    return moved;
}

void *memalign(size_t alignment, size_t size) { return taken(__libc_memalign(alignment, size)); }

void *aligned_alloc(size_t alignment, size_t size) { return taken(__libc_memalign(alignment, size)); }

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) {
        return EINVAL;
    }
    void *ptr = taken(__libc_memalign(alignment, size));
    if (ptr == NULL) {
        return ENOMEM;
    }
    *out = ptr;
    return 0;
}

void *valloc(size_t size) { return taken(__libc_memalign(4096, size)); }

void *pvalloc(size_t size) { return taken(__libc_memalign(4096, (size + 4095) & ~(size_t)4095)); }

/* What the heap pass reads through ctypes. */
int64_t heap_peak_current(void) { return __atomic_load_n(&current_bytes, __ATOMIC_RELAXED); }

int64_t heap_peak_peak(void) { return __atomic_load_n(&peak_bytes, __ATOMIC_RELAXED); }

void heap_peak_reset(void) { __atomic_store_n(&peak_bytes, heap_peak_current(), __ATOMIC_RELAXED); }
