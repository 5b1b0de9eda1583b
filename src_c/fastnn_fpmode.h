/*
 * fastnn_fpmode.h -- flush subnormal floats to zero around fastnn's compiled work, in plain C.
 *
 * Why: once a model converges, Adam's moments, momentum buffers and softmax gradients fall below
 * the smallest normal float (1.2e-38 in float32); many operations that read or write such a
 * subnormal then take a slow path in the CPU, and a float32 Adam fit ran 2x (this project's
 * machine, bench/long_run.py) to 8x (another machine) slower at its end than at its start.
 * TensorFlow and XLA run CPU kernels with the flush bits set; fastnn does the same, but only
 * for the duration of its own compiled calls: every entry point saves the caller's mode, sets
 * the flush bits, does its work and puts the saved mode back before returning.
 *
 * The mode is a per-thread register, so this covers the thread that calls in and nothing else.
 *   x86-64 (SSE/AVX):  MXCSR bit 15 FTZ (results that would be subnormal become 0) and bit 6
 *                      DAZ (subnormal inputs are read as 0).
 *   aarch64:           FPCR bit 24 FZ (both at once, for single and double precision).
 *   anything else:     no switch; the functions do nothing and fnn_fpmode_supported() is 0.
 *
 * Nothing here allocates or touches Python; everything can run without the GIL.
 */
#ifndef FASTNN_FPMODE_H
#define FASTNN_FPMODE_H

#if defined(__x86_64__) || defined(_M_X64) || defined(__SSE2__) || \
    (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <xmmintrin.h>
#define FNN_FPMODE_X86 1
#define FNN_FPMODE_FLUSH_BITS 0x8040ULL          /* FTZ (bit 15) | DAZ (bit 6) */
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define FNN_FPMODE_ARM64 1
#define FNN_FPMODE_FLUSH_BITS (1ULL << 24)       /* FZ */
#else
#define FNN_FPMODE_FLUSH_BITS 0ULL
#endif

/* A compiler barrier: no load or store moves across a mode switch (the compiler does not
 * model the floating-point mode, so without it memory accesses could be scheduled on the
 * wrong side of it). */
#if defined(__GNUC__) || defined(__clang__)
#define FNN_FPMODE_BARRIER() __asm__ __volatile__("" ::: "memory")
#elif defined(_MSC_VER)
#include <intrin.h>
#define FNN_FPMODE_BARRIER() _ReadWriteBarrier()
#else
#define FNN_FPMODE_BARRIER() ((void) 0)
#endif

/* 1 when this build can switch flushing on, 0 when the fnn_fpmode_* functions do nothing. */
static inline int fnn_fpmode_supported(void)
{
    return FNN_FPMODE_FLUSH_BITS != 0ULL;
}

/* The bits of the control register a program may write: MXCSR's upper 16 bits are reserved
 * (setting one faults), FPCR's upper 32.  0 without a register. */
static inline unsigned long long fnn_fpmode_writable_bits(void)
{
#if defined(FNN_FPMODE_X86)
    return 0xFFFFULL;
#elif defined(FNN_FPMODE_ARM64)
    return 0xFFFFFFFFULL;
#else
    return 0ULL;
#endif
}

/* The calling thread's floating-point control register (MXCSR / FPCR), or 0 without one. */
static inline unsigned long long fnn_fpmode_get(void)
{
#if defined(FNN_FPMODE_X86)
    return (unsigned long long) _mm_getcsr();
#elif defined(FNN_FPMODE_ARM64)
    unsigned long long fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    return fpcr;
#else
    return 0ULL;
#endif
}

/* Write the calling thread's control register (a value fnn_fpmode_get returned; only
 * fnn_fpmode_writable_bits may be set). */
static inline void fnn_fpmode_set(unsigned long long mode)
{
    FNN_FPMODE_BARRIER();
#if defined(FNN_FPMODE_X86)
    _mm_setcsr((unsigned int) mode);
#elif defined(FNN_FPMODE_ARM64)
    __asm__ __volatile__("msr fpcr, %0" : : "r"(mode) : "memory");
#else
    (void) mode;
#endif
    FNN_FPMODE_BARRIER();
}

/*
 * Start a stretch of compiled work.  flush != 0: set the flush bits of the calling thread;
 * flush == 0: leave the mode exactly as the caller has it.  Returns the caller's mode, to be
 * handed to fnn_fpmode_leave (with the same `flush`) on every way out of that stretch.
 */
static inline unsigned long long fnn_fpmode_enter(int flush)
{
    unsigned long long saved = fnn_fpmode_get();
    if (flush && (saved & FNN_FPMODE_FLUSH_BITS) != FNN_FPMODE_FLUSH_BITS)
        fnn_fpmode_set(saved | FNN_FPMODE_FLUSH_BITS);
    return saved;
}

/*
 * End the stretch.  flush != 0: put the caller's whole register back, exception flags
 * included, so the caller sees the mode and the flags it had before the call.
 */
static inline void fnn_fpmode_leave(int flush, unsigned long long saved)
{
    if (flush && fnn_fpmode_get() != saved)
        fnn_fpmode_set(saved);
}

#endif /* FASTNN_FPMODE_H */
