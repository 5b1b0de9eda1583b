/*
 * fastnn_pool.h -- fastnn's own worker threads: run tasks 0 .. n-1 of a job over a few threads.
 *
 * Included by fastnn/_pool.pyx ONLY (every extension module that included it would start a
 * pool of its own); other modules reach it through `from fastnn._pool cimport parallel_for`.
 *
 * Why our own pool and not OpenMP (Cython's prange):
 *   - fork: GNU OpenMP's threads do not survive fork(), and a child that enters a parallel
 *     region after its parent did hangs; multiprocessing forks by default on Linux.  This pool
 *     forgets its workers in the child (pthread_atfork) and starts new ones there.
 *   - the floating-point mode: every job carries the caller's control register (flush to zero,
 *     fastnn_fpmode.h) to the workers, which restore their own afterwards.
 *   - one library, no libgomp to vendor into wheels, and the same code under any compiler.
 *
 * Results never depend on the thread count: a job's decomposition into tasks is fixed by its
 * caller; each task writes its own outputs; which thread runs which task is the only thing
 * that varies.  A nested call (from inside a task), or a call while another thread's job
 * holds the pool, runs its tasks serially on the calling thread: the same bits, no deadlock.
 *
 * Nothing here touches Python; everything runs without the GIL.
 */
#ifndef FASTNN_POOL_H
#define FASTNN_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <time.h>
#include "fastnn_fpmode.h"

typedef void (*fnn_task_fn)(void *ctx, long task);

#define FNN_POOL_MAX_THREADS 256
/* How long an idle worker (or the waiting caller) stays awake, polling, before it sleeps on
 * a condition variable: a job that comes within this time (the next layer, the next
 * minibatch, the next epoch) then finds it awake.  Waking a sleeping thread costs a futex call
 * and, on a virtual machine, the host scheduling the vCPU again: tens of microseconds, as much
 * as a whole product at batch 64.  With a 20000-poll spin (~10 us) the worker slept between
 * most jobs and network A trained 1.29x faster on 2 threads than on 1 at batch 64 and 1.62x
 * at batch 256; staying awake 2 ms gave 1.53x and 1.81x (bench/RESULTS.md section 11).
 * OpenBLAS's own threads stay awake far longer (2^28 cycles, ~0.1 s).  The first
 * FNN_POOL_PAUSE_NS are a `pause` loop (the fastest reaction); after that the poll yields the
 * core (sched_yield) so that an oversubscribed machine runs its other threads meanwhile. */
#ifndef FNN_POOL_AWAKE_NS
#define FNN_POOL_AWAKE_NS 2000000L
#endif
#define FNN_POOL_PAUSE_NS 50000L

typedef struct {
    pthread_mutex_t lock;         /* guards the condition variables' waits */
    pthread_cond_t done;          /* the caller sleeps here until the job's workers finish */
    pthread_mutex_t busy;         /* held by the one caller whose job runs on the pool */
    int n_workers;                /* worker threads started (the caller is not one) */
    unsigned long generation;     /* the number of the current job (the caller's only) */
    atomic_ulong open_job;        /* the number of the job workers may still join; 0: none */
    atomic_int n_joined;          /* workers inside a job now (joining, or taking tasks) */
    atomic_long next;             /* next task index of the current job */
    /* the current job (written by the caller before it hands out the tickets) */
    fnn_task_fn fn;
    void *ctx;
    long n_tasks;
    unsigned long long fpmode;    /* the caller's floating-point control register */
} fnn_pool_t;

static fnn_pool_t fnn_pool = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
    PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, NULL, NULL, 0, 0ULL};
/* The job number each worker is to take part in next: the caller sets it for the workers it
 * wants, after writing the job; a worker acts when its ticket changes.  (One shared counter
 * would let a worker that sat out one job read the next job's fields and act twice.) */
static atomic_ulong fnn_pool_ticket[FNN_POOL_MAX_THREADS];
/* Where idle worker i sleeps: one condition variable each, so that a job wakes only the
 * workers it gave a ticket.  (One shared variable, broadcast, woke every sleeping worker for
 * every job: after a job on many threads, e.g. a prediction on every core of a large machine,
 * each job of a later 2-thread fit woke all the idle others, which found no ticket and slept
 * again: 4 -> 18 us per job with 255 of them.)  Initialized by fnn_pool_grow before its
 * worker starts. */
static pthread_cond_t fnn_pool_wake[FNN_POOL_MAX_THREADS];
static _Thread_local int fnn_pool_worker_index = -1;   /* -1: not a pool worker */
static int fnn_pool_atfork_installed = 0;

/* In a child of fork() the workers do not exist: start afresh. */
static void fnn_pool_after_fork_child(void)
{
    pthread_mutex_init(&fnn_pool.lock, NULL);
    pthread_cond_init(&fnn_pool.done, NULL);
    pthread_mutex_init(&fnn_pool.busy, NULL);
    fnn_pool.n_workers = 0;
    fnn_pool.generation = 0;
    for (int i = 0; i < FNN_POOL_MAX_THREADS; i++)
        atomic_store(&fnn_pool_ticket[i], 0UL);
    atomic_store(&fnn_pool.open_job, 0UL);
    atomic_store(&fnn_pool.n_joined, 0);
    fnn_pool_worker_index = -1;
}

static inline void fnn_pool_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* (long long: a 32-bit long overflows after 2 s of CLOCK_MONOTONIC's nanoseconds) */
static inline long long fnn_pool_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Poll until ready(arg) (returns 1) or FNN_POOL_AWAKE_NS have passed (returns 0). */
static int fnn_pool_poll(int (*ready)(const void *), const void *arg)
{
    long long began = fnn_pool_now_ns(), waited = 0;
    for (unsigned polls = 1; ; polls++) {
        if (ready(arg))
            return 1;
        if (waited < FNN_POOL_PAUSE_NS)
            fnn_pool_cpu_relax();
        else
            sched_yield();
        if ((polls & 63) == 0) {
            waited = fnn_pool_now_ns() - began;
            if (waited >= FNN_POOL_AWAKE_NS)
                return ready(arg);
        }
    }
}

typedef struct { atomic_ulong *word; unsigned long seen; } fnn_pool_ticket_wait;

static int fnn_pool_ticket_changed(const void *arg)
{
    const fnn_pool_ticket_wait *w = (const fnn_pool_ticket_wait *) arg;
    return atomic_load(w->word) != w->seen;
}

static int fnn_pool_none_joined(const void *arg)
{
    (void) arg;
    return atomic_load(&fnn_pool.n_joined) == 0;
}

static void fnn_pool_take_tasks(void)
{
    long t;
    while ((t = atomic_fetch_add(&fnn_pool.next, 1)) < fnn_pool.n_tasks)
        fnn_pool.fn(fnn_pool.ctx, t);
}

static void *fnn_pool_worker(void *arg)
{
    int index = (int) (long) arg;
    unsigned long seen = 0;       /* a new worker's ticket is 0 until its first job */
    fnn_pool_worker_index = index;
    for (;;) {
        unsigned long ticket;
        fnn_pool_ticket_wait wait = {&fnn_pool_ticket[index], seen};
        if (!fnn_pool_poll(fnn_pool_ticket_changed, &wait)) {
            pthread_mutex_lock(&fnn_pool.lock);
            while ((ticket = atomic_load(&fnn_pool_ticket[index])) == seen)
                pthread_cond_wait(&fnn_pool_wake[index], &fnn_pool.lock);
            pthread_mutex_unlock(&fnn_pool.lock);
        }
        ticket = atomic_load(&fnn_pool_ticket[index]);
        seen = ticket;
        /* Join, then look whether the job is still open: a worker that wakes after the
         * caller has run every task and closed the job stays out of it (and of its fields),
         * so the caller never waits for a worker that the OS has not scheduled yet. */
        atomic_fetch_add(&fnn_pool.n_joined, 1);
        if (atomic_load(&fnn_pool.open_job) == ticket) {
            unsigned long long saved = fnn_fpmode_get();
            fnn_fpmode_set(fnn_pool.fpmode);
            fnn_pool_take_tasks();
            fnn_fpmode_set(saved);
        }
        if (atomic_fetch_sub(&fnn_pool.n_joined, 1) == 1) {
            pthread_mutex_lock(&fnn_pool.lock);
            pthread_cond_signal(&fnn_pool.done);
            pthread_mutex_unlock(&fnn_pool.lock);
        }
    }
    return NULL;
}

/* Start workers until there are `wanted` (or thread creation fails); returns how many exist.
 * Called with fnn_pool.busy held. */
static int fnn_pool_grow(int wanted)
{
    if (!fnn_pool_atfork_installed) {
        if (pthread_atfork(NULL, NULL, fnn_pool_after_fork_child) != 0)
            return 0;
        fnn_pool_atfork_installed = 1;
    }
    while (fnn_pool.n_workers < wanted) {
        pthread_t thread;
        pthread_attr_t attr;
        /* (afresh in a child of fork() too: a parent's worker may have been waiting on it) */
        pthread_cond_init(&fnn_pool_wake[fnn_pool.n_workers], NULL);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&thread, &attr, fnn_pool_worker,
                                (void *) (long) fnn_pool.n_workers);
        pthread_attr_destroy(&attr);
        if (rc != 0)
            break;
        fnn_pool.n_workers++;
    }
    return fnn_pool.n_workers;
}

/*
 * Run fn(ctx, t) for every t in 0 .. n_tasks-1 on up to n_threads threads (the caller is
 * one of them) and return when all have run.  Tasks must write disjoint outputs.  Serial on
 * the caller when n_threads <= 1, n_tasks <= 1, called from inside a task, or while another
 * thread's job holds the pool.  Returns the number of threads that took part.
 */
static int fnn_parallel_for(int n_threads, long n_tasks, fnn_task_fn fn, void *ctx)
{
    long t;
    int helpers;
    if (n_tasks <= 0)
        return 0;
    if (n_threads > FNN_POOL_MAX_THREADS)
        n_threads = FNN_POOL_MAX_THREADS;
    helpers = n_threads - 1;
    if (helpers > n_tasks - 1)
        helpers = (int) (n_tasks - 1);
    if (helpers <= 0 || fnn_pool_worker_index >= 0
            || pthread_mutex_trylock(&fnn_pool.busy) != 0) {
        for (t = 0; t < n_tasks; t++)
            fn(ctx, t);
        return 1;
    }
    if (fnn_pool_grow(helpers) < helpers)
        helpers = fnn_pool.n_workers;
    if (helpers <= 0) {
        pthread_mutex_unlock(&fnn_pool.busy);
        for (t = 0; t < n_tasks; t++)
            fn(ctx, t);
        return 1;
    }
    fnn_pool.fn = fn;
    fnn_pool.ctx = ctx;
    fnn_pool.n_tasks = n_tasks;
    fnn_pool.fpmode = fnn_fpmode_get() & fnn_fpmode_writable_bits();
    atomic_store(&fnn_pool.next, 0L);
    fnn_pool.generation++;
    atomic_store(&fnn_pool.open_job, fnn_pool.generation);   /* publishes the fields above */
    pthread_mutex_lock(&fnn_pool.lock);
    for (int i = 0; i < helpers; i++) {              /* publishes the job to its workers */
        atomic_store(&fnn_pool_ticket[i], fnn_pool.generation);
        pthread_cond_signal(&fnn_pool_wake[i]);      /* (only worker i waits there) */
    }
    pthread_mutex_unlock(&fnn_pool.lock);

    fnn_pool_take_tasks();

    /* every task is taken: close the job, then wait for the workers that joined it (one
     * that joins after this sees it closed and leaves at once) */
    atomic_store(&fnn_pool.open_job, 0UL);
    if (!fnn_pool_poll(fnn_pool_none_joined, NULL)) {
        pthread_mutex_lock(&fnn_pool.lock);
        while (atomic_load(&fnn_pool.n_joined) > 0)
            pthread_cond_wait(&fnn_pool.done, &fnn_pool.lock);
        pthread_mutex_unlock(&fnn_pool.lock);
    }
    pthread_mutex_unlock(&fnn_pool.busy);
    return helpers + 1;
}

/* Worker threads started so far (for tests and diagnostics). */
static int fnn_pool_size(void)
{
    return fnn_pool.n_workers;
}

/* The thread limit threadpoolctl sets on this pool (0: none).  fastnn.threads registers a
 * threadpoolctl controller that finds this library among the loaded ones by these two
 * exported names and calls them through ctypes, as threadpoolctl calls omp_set_num_threads
 * or openblas_set_num_threads; fastnn.threads.default_threads reads the limit (the pool
 * itself only ever runs the count a caller passes).  Process-wide, like OpenBLAS's own. */
#if defined(_WIN32)
#define FNN_EXPORT __declspec(dllexport)
#else
#define FNN_EXPORT __attribute__((visibility("default")))
#endif
static atomic_int fnn_pool_thread_limit = 0;

FNN_EXPORT int fastnn_pool_get_thread_limit(void)
{
    return atomic_load(&fnn_pool_thread_limit);
}

FNN_EXPORT void fastnn_pool_set_thread_limit(int n)
{
    atomic_store(&fnn_pool_thread_limit, n > 0 ? n : 0);
}

#endif /* FASTNN_POOL_H */
