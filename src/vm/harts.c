/* One host thread per hart (as QEMU's MTTCG): the threaded run loop, sleeping and waking harts,
 * and stopping the world for the lifecycle code.
 *
 * The thread that calls vm_run becomes the I/O thread: it polls the I/O sources (console,
 * network backends, control socket) and serves them under the machine's big lock. Each hart
 * thread runs its hart in slices; between slices it serves what other threads asked of it (TLB
 * flushes, posted IPIs), raises its own machine timer, and sleeps on its condition variable
 * while it waits in WFI, is stopped (SBI HSM) or is parked by a stop-the-world request. What is
 * asked of a running hart cuts its run short (a kick, below).
 *
 * Stop-the-world (vm_stop_harts): every hart leaves rv_hart_run at an instruction boundary
 * within a block of its kick (rv_hart.stop_request) and parks; the caller continues once all are
 * parked. Pause, snapshots, migration's dirty-page harvest and the control socket's hart queries
 * use it; nothing else the I/O thread does needs the harts stopped, since the devices are under
 * the big lock and the harts take it for every MMIO access.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vm/machine.h"

/* A hart's slice between looks at its machine timer and its HTIF (interrupts, remote requests and
 * stop requests are seen inside rv_hart_run). */
#define VM_THREAD_SLICE 100000
/* Longest sleep of an idle hart or of the I/O thread: bounds what nobody wakes them for. */
#define VM_THREAD_MAX_SLEEP_NS 100000000ll
/* A hart whose guest spins (cpu_relax: a lock, another hart's answer to an IPI, a barrier) gives
 * its CPU away with sched_yield after each short run, as long as yielding is quick: on an idle or
 * lightly loaded host the hart it waits for then runs at once (a hand-off costs ~15 us here).
 * On a loaded host a yield loses a whole scheduling round (issue 18: a 4-hart litmus test took
 * 91 s of wall time for 0.4 s of CPU at load 26, ~2 ms per hand-off). So the harts keep a moving
 * average of how long their yields take; while it is above VM_SPIN_SLOW_YIELD_NS a spinning hart
 * sleeps instead, until another hart did work (vm_harts_progress) or VM_SPIN_SLEEP_NS passed
 * (the guest may also wait for time to pass, udelay spins on the time CSR, or for a device), and
 * yields once every VM_SPIN_PROBE_NS to measure again. A futex hand-off costs 50-100 us on this
 * host, and a yield that lets a sibling hart run its slice is long for a good reason: at 200 us
 * the harts slept already at load 8-11 and were slower there (smp_litmus, 2-hart sha256), so
 * only yields that take a millisecond on average (lost rounds) make them sleep. */
#define VM_SPIN_SLOW_YIELD_NS 1000000
#define VM_SPIN_PROBE_NS 50000000
#define VM_SPIN_SLEEP_NS 200000
#define VM_SPIN_FUTILE 2

static int64_t thread_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool vm_stopping(const vm *m) { return __atomic_load_n(&m->stop, __ATOMIC_ACQUIRE); }

/* ------------------------------------------------------------------ kicks
 *
 * A running hart looks at interrupts and requests only every 16384 instructions (cpu.c), for its
 * own timer's sake. What another thread asks of it and should not wait that long (an RFENCE whose
 * caller spins until it is served, an IPI, a device interrupt, a stop) interrupts the hart's
 * thread with VM_KICK_SIGNAL: the handler runs on that thread between two of its instructions and
 * cuts the hart's run short (rv_hart_cut_run), so the hart looks within a block. This costs the
 * running code nothing, where a flag tested by every translated block would cost every block a
 * load and a branch. */
#define VM_KICK_SIGNAL SIGRTMIN

static void vm_kick_handler(int sig, siginfo_t *si, void *uc) {
  (void)sig, (void)uc;
  rv_hart_cut_run(si->si_value.sival_ptr);
}

static int vm_kicks_init(vs_error **err) {
  struct sigaction sa = {.sa_sigaction = vm_kick_handler, .sa_flags = SA_SIGINFO | SA_RESTART};
  sigemptyset(&sa.sa_mask);
  if (sigaction(VM_KICK_SIGNAL, &sa, NULL) < 0)
    return vs_error_set(err, errno, "install the signal handler that interrupts a hart's run");
  return 0;
}

/* (sched_lock held) Interrupt the thread of hart h if it runs the hart; an idle thread waits on
 * its condition variable instead, and one not started yet or ended has nothing to cut. */
static void vm_kick_locked(vm *m, unsigned h) {
  vm_hart_thread *ht = &m->threads.harts[h];
  if (!ht->runs)
    return;
  (void)pthread_sigqueue(ht->thread, VM_KICK_SIGNAL, (union sigval){.sival_ptr = &m->harts[h]});
}

/* ------------------------------------------------------------------ set-up */

int vm_threads_init(vm *m, vs_error **err) {
  vm_threads *t = &m->threads;
  t->kick_fd = -1;
  if (m->nharts < 2 || m->cfg.one_thread)
    return 0;
  if (vm_kicks_init(err) < 0)
    return -1;
  t->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (t->kick_fd < 0)
    return vs_error_set(err, errno, "eventfd for the I/O thread");
  pthread_mutex_init(&t->big_lock, NULL);
  pthread_mutex_init(&t->sched_lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&t->parked_cv, &ca);
  for (unsigned h = 0; h < m->nharts; h++) {
    t->harts[h] = (vm_hart_thread){.m = m, .index = h};
    pthread_cond_init(&t->harts[h].wake, &ca);
  }
  pthread_condattr_destroy(&ca);
  t->on = true;
  m->bus.threaded = true;
  return 0;
}

void vm_threads_destroy(vm *m) {
  vm_threads *t = &m->threads;
  if (!t->on)
    return;
  for (unsigned h = 0; h < m->nharts; h++)
    pthread_cond_destroy(&t->harts[h].wake);
  pthread_cond_destroy(&t->parked_cv);
  pthread_mutex_destroy(&t->sched_lock);
  pthread_mutex_destroy(&t->big_lock);
  close(t->kick_fd);
  t->on = false;
}

/* ------------------------------------------------------------------ locks and wake-ups */

void vm_big_lock(vm *m) {
  if (m->threads.on)
    pthread_mutex_lock(&m->threads.big_lock);
}

void vm_big_unlock(vm *m) {
  if (m->threads.on)
    pthread_mutex_unlock(&m->threads.big_lock);
}

void vm_harts_progress(vm *m, uint32_t whom) {
  vm_threads *t = &m->threads;
  if (!t->on)
    return;
  /* sequentially consistent with the sleepers' counts and futex read: either a sleeper sees the
   * new value and does not sleep, or this sees it counted and wakes it */
  __atomic_add_fetch(&t->progress, 1, __ATOMIC_SEQ_CST);
  uint32_t sleeping = __atomic_load_n(&t->sleepers, __ATOMIC_SEQ_CST);
  if (sleeping == 0 ||
      (whom == VM_PROGRESS_ANY && __atomic_load_n(&t->sleepers_any, __ATOMIC_SEQ_CST) == 0))
    return;
  (void)syscall(SYS_futex, &t->progress, FUTEX_WAKE_BITSET_PRIVATE, INT_MAX, NULL, NULL, whom);
}

bool vm_harts_wait_progress(vm *m, unsigned self, uint32_t seen, bool any, int64_t timeout_ns) {
  vm_threads *t = &m->threads;
  int64_t until = thread_now_ns() + timeout_ns;
  struct timespec ts = {until / 1000000000, until % 1000000000};
  uint32_t mask = (1U << self) | (any ? VM_PROGRESS_ANY : 0);
  __atomic_add_fetch(&t->sleepers, 1, __ATOMIC_SEQ_CST);
  if (any)
    __atomic_add_fetch(&t->sleepers_any, 1, __ATOMIC_SEQ_CST);
  /* returns at once (EAGAIN) if the word moved on since `seen`; the time is absolute */
  (void)syscall(SYS_futex, &t->progress, FUTEX_WAIT_BITSET_PRIVATE, seen, &ts, NULL, mask);
  if (any)
    __atomic_sub_fetch(&t->sleepers_any, 1, __ATOMIC_SEQ_CST);
  __atomic_sub_fetch(&t->sleepers, 1, __ATOMIC_SEQ_CST);
  return __atomic_load_n(&t->progress, __ATOMIC_ACQUIRE) != seen;
}

void vm_wake_hart(vm *m, unsigned h) {
  vm_threads *t = &m->threads;
  if (!t->on || h >= m->nharts)
    return;
  pthread_mutex_lock(&t->sched_lock);
  pthread_cond_signal(&t->harts[h].wake);
  vm_kick_locked(m, h);
  pthread_mutex_unlock(&t->sched_lock);
  vm_harts_progress(m, 1U << h); /* or it spins, asleep in vm_harts_wait_progress */
}

static void vm_wake_all_harts(vm *m) {
  vm_threads *t = &m->threads;
  pthread_mutex_lock(&t->sched_lock);
  for (unsigned h = 0; h < m->nharts; h++)
    pthread_cond_signal(&t->harts[h].wake);
  pthread_mutex_unlock(&t->sched_lock);
  vm_harts_progress(m, VM_PROGRESS_ALL_HARTS);
}

void vm_kick_io(vm *m) {
  vm_threads *t = &m->threads;
  if (!t->on || __atomic_exchange_n(&t->kicked, true, __ATOMIC_ACQ_REL))
    return;
  uint64_t one = 1;
  if (write(t->kick_fd, &one, sizeof(one)) < 0) {
    /* the counter is full: the I/O thread has a wake-up pending anyway */
  }
}

/* ------------------------------------------------------------------ HSM */

void vm_hart_begin(vm *m, unsigned h) {
  rv_hart *t = &m->harts[h];
  rv_hart_reset(t, m->hsm_start_addr[h], RV_PRIV_S);
  t->x[10] = h;
  t->x[11] = m->hsm_start_opaque[h];
  vm_set_hsm_state(m, h, HSM_STARTED);
}

void vm_hart_start(vm *m, unsigned h) {
  vm_threads *t = &m->threads;
  if (!t->on) {
    vm_hart_begin(m, h);
    m->harts[h].stop_request = m->stop;
    return;
  }
  /* the hart's thread may still be leaving the SBI call that stopped it: it resets itself */
  pthread_mutex_lock(&t->sched_lock);
  vm_set_hsm_state(m, h, HSM_START_PENDING);
  pthread_cond_signal(&t->harts[h].wake);
  pthread_mutex_unlock(&t->sched_lock);
  vm_harts_progress(m, 1U << h);
}

/* ------------------------------------------------------------------ remote TLB flushes */

uint32_t vm_hart_ask_tlb_flush(vm *m, unsigned h) {
  vm_threads *t = &m->threads;
  rv_hart *target = &m->harts[h];
  uint32_t ticket = rv_hart_ask_tlb_flush(target);
  pthread_mutex_lock(&t->sched_lock);
  if (t->harts[h].idle) {
    /* its thread waits in vm_hart_wait_for_work, which touches the hart only under this lock:
     * serve the request here rather than wake it and wait for the host to schedule it */
    rv_hart_serve_requests(target);
  } else {
    pthread_cond_signal(&t->harts[h].wake);
    vm_kick_locked(m, h);
  }
  pthread_mutex_unlock(&t->sched_lock);
  vm_harts_progress(m, 1U << h); /* a spinning target serves it when it runs again */
  return ticket;
}

/* ------------------------------------------------------------------ stop the world */

void vm_stop_harts(vm *m) {
  vm_threads *t = &m->threads;
  if (!t->on || !t->io_running)
    return; /* no hart thread runs */
  /* a hart may be waiting for the big lock in the middle of an MMIO access: let it finish */
  pthread_mutex_unlock(&t->big_lock);
  pthread_mutex_lock(&t->sched_lock);
  t->stop_requests++;
  for (unsigned h = 0; h < m->nharts; h++) {
    __atomic_store_n(&m->harts[h].stop_request, true, __ATOMIC_SEQ_CST);
    pthread_cond_signal(&t->harts[h].wake);
    vm_kick_locked(m, h);
  }
  vm_harts_progress(m, VM_PROGRESS_ALL_HARTS); /* spinning harts asleep park when they wake */
  while (t->parked < t->live)
    pthread_cond_wait(&t->parked_cv, &t->sched_lock);
  pthread_mutex_unlock(&t->sched_lock);
  pthread_mutex_lock(&t->big_lock);
}

void vm_release_harts(vm *m) {
  vm_threads *t = &m->threads;
  if (!t->on || !t->io_running)
    return;
  pthread_mutex_lock(&t->sched_lock);
  if (t->stop_requests > 0 && --t->stop_requests == 0)
    for (unsigned h = 0; h < m->nharts; h++)
      pthread_cond_signal(&t->harts[h].wake);
  pthread_mutex_unlock(&t->sched_lock);
}

/* ------------------------------------------------------------------ a hart's thread */

/* The machine timer of hart h follows mtimecmp (the ACLINT raises it on writes; the passing of
 * time is noticed here). */
static void vm_hart_update_mtip(vm *m, unsigned h) {
  uint64_t cmp = __atomic_load_n(&m->aclint.mtimecmp[h], __ATOMIC_RELAXED);
  rv_hart_set_irq(&m->harts[h], RV_MIP_MTIP, vm_read_mtime(m) >= cmp);
}

/* When an idle hart's timers fire, as an absolute CLOCK_MONOTONIC time; capped. */
static int64_t vm_hart_wake_deadline(vm *m, unsigned h) {
  const rv_hart *t = &m->harts[h];
  uint64_t deadline = UINT64_MAX;
  if (t->mie & RV_MIP_MTIP)
    deadline = __atomic_load_n(&m->aclint.mtimecmp[h], __ATOMIC_RELAXED);
  uint64_t st = rv_hart_next_timer(t);
  if ((t->mie & RV_MIP_STIP) && st < deadline)
    deadline = st;
  int64_t now_ns = thread_now_ns();
  int64_t wait = VM_THREAD_MAX_SLEEP_NS;
  uint64_t now = vm_read_mtime(m);
  if (deadline != UINT64_MAX) {
    uint64_t ticks = deadline > now ? deadline - now : 0;
    if (ticks < (uint64_t)VM_THREAD_MAX_SLEEP_NS / (1000000000 / VM_TIMEBASE_HZ))
      wait = (int64_t)ticks * (1000000000 / VM_TIMEBASE_HZ);
  }
  return now_ns + wait;
}

static void vm_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t abs_ns) {
  struct timespec ts = {abs_ns / 1000000000, abs_ns % 1000000000};
  pthread_cond_timedwait(cv, mu, &ts);
}

/* Park at an instruction boundary while the world is stopped (sched_lock held). Remote requests
 * are still served: a hart that stopped in the middle of an SBI call waits for them. */
static void vm_hart_park(vm *m, vm_hart_thread *ht) {
  vm_threads *t = &m->threads;
  rv_hart *h = &m->harts[ht->index];
  t->parked++;
  pthread_cond_broadcast(&t->parked_cv);
  while (t->stop_requests && !vm_stopping(m)) {
    rv_hart_serve_requests(h);
    pthread_cond_wait(&ht->wake, &t->sched_lock);
  }
  rv_hart_serve_requests(h);
  t->parked--;
}

/* Would the hart run now? (sched_lock held) */
static bool vm_hart_ready(vm *m, unsigned h) {
  if (vm_hsm_state(m, h) != HSM_STARTED || __atomic_load_n(&m->hart_held[h], __ATOMIC_ACQUIRE))
    return false;
  rv_hart *t = &m->harts[h];
  if (!t->wfi)
    return true;
  vm_hart_update_mtip(m, h);
  return rv_hart_irq_pending(t);
}

/* After a slice the hart mostly runs on with nothing asked of it: then it needs no lock, whose
 * cache line would go back and forth between the harts' cores at every slice. The requests and
 * interrupts posted to it are served where its run looks at them; a request to stop, or a stop
 * of its own (HSM, WFI), takes it through the lock. */
static bool vm_hart_runs_on(vm *m, const vm_hart_thread *ht) {
  const rv_hart *h = &m->harts[ht->index];
  return ht->runs && !h->wfi && !__atomic_load_n(&h->stop_request, __ATOMIC_ACQUIRE) &&
         !vm_stopping(m);
}

/* Wait until the hart has something to run; false when the machine stops. */
static bool vm_hart_wait_for_work(vm *m, vm_hart_thread *ht) {
  vm_threads *t = &m->threads;
  unsigned h = ht->index;
  if (vm_hart_runs_on(m, ht))
    return true;
  pthread_mutex_lock(&t->sched_lock);
  ht->idle = true;
  ht->runs = false;
  for (;;) {
    rv_hart_serve_requests(&m->harts[h]);
    if (vm_stopping(m))
      break;
    if (t->stop_requests) {
      vm_hart_park(m, ht);
      continue;
    }
    if (vm_hsm_state(m, h) == HSM_START_PENDING)
      vm_hart_begin(m, h);
    if (vm_hart_ready(m, h)) {
      /* stop_request is cleared while no stop is asked, under the lock vm_stop_harts asks
       * under: a request after this point sets it again */
      __atomic_store_n(&m->harts[h].stop_request, false, __ATOMIC_SEQ_CST);
      ht->idle = false;
      ht->runs = true;
      pthread_mutex_unlock(&t->sched_lock);
      return true;
    }
    if (vm_hsm_state(m, h) == HSM_STARTED)
      vm_cond_wait_until(&ht->wake, &t->sched_lock, vm_hart_wake_deadline(m, h));
    else
      pthread_cond_wait(&ht->wake, &t->sched_lock);
  }
  ht->idle = false;
  pthread_mutex_unlock(&t->sched_lock);
  return false;
}

/* HTIF lives in RAM: bare-metal test programs write tohost; looking after each slice is enough. */
static void vm_thread_poll_htif(vm *m, const rv_hart *hart) {
  if (!m->htif_enabled)
    return;
  pthread_mutex_lock(&m->threads.big_lock);
  vm_poll_htif(m, hart);
  pthread_mutex_unlock(&m->threads.big_lock);
}

/* After a slice: wake the spinning harts if this one did work (its stores may be what they wait
 * for), and if its guest only spun, let the others run (yield or sleep, VM_SPIN_SLOW_YIELD_NS).
 * `seen` is the progress word before the slice: what others did during it ends the sleep at
 * once. A hart that others' work woke VM_SPIN_FUTILE times in a row only to spin again (it waits
 * for something rarer: a barrier, a lock held long) sleeps its whole timeout unless asked for
 * something itself, instead of waking at every hand-off between two other harts. */
static void vm_hart_after_run(vm *m, vm_hart_thread *ht, uint32_t seen, uint64_t done) {
  vm_threads *t = &m->threads;
  const rv_hart *h = &m->harts[ht->index];
  /* a run that ends spinning where the last one did, after as many instructions, went round the
   * same loop again: it wrote nothing another hart waits for (a miss only costs a wake-up) */
  bool only_spun = h->spun && ht->spinning && ht->spin_insns == done && ht->spin_pc == h->pc;
  if (!only_spun)
    vm_harts_progress(m, VM_PROGRESS_ANY);
  if (!only_spun)
    ht->spin_futile = 0;
  else if (ht->spin_woken)
    ht->spin_futile++;
  ht->spin_woken = false;
  ht->spinning = h->spun;
  ht->spin_pc = h->pc;
  ht->spin_insns = done;
  if (!h->spun || __atomic_load_n(&h->stop_request, __ATOMIC_ACQUIRE))
    return;
  int64_t now = thread_now_ns();
  /* the harts update the average without a lock: a lost update only delays a switch */
  int64_t avg = __atomic_load_n(&t->spin_yield_ns, __ATOMIC_RELAXED);
  if (avg <= VM_SPIN_SLOW_YIELD_NS || now >= __atomic_load_n(&t->spin_probe_at, __ATOMIC_RELAXED)) {
    sched_yield();
    int64_t back = thread_now_ns();
    avg += (back - now - avg) / 8;
    __atomic_store_n(&t->spin_yield_ns, avg, __ATOMIC_RELAXED);
    if (avg > VM_SPIN_SLOW_YIELD_NS)
      __atomic_store_n(&t->spin_probe_at, back + VM_SPIN_PROBE_NS, __ATOMIC_RELAXED);
    return;
  }
  if (!only_spun)
    return; /* it did something: it may get further at once */
  bool any = ht->spin_futile < VM_SPIN_FUTILE;
  if (!any)
    seen = __atomic_load_n(&t->progress, __ATOMIC_ACQUIRE);
  ht->spin_woken = vm_harts_wait_progress(m, ht->index, seen, any, VM_SPIN_SLEEP_NS);
}

static void *vm_hart_thread_main(void *arg) {
  vm_hart_thread *ht = arg;
  vm *m = ht->m;
  rv_hart *h = &m->harts[ht->index];
  while (vm_hart_wait_for_work(m, ht)) {
    uint32_t seen = __atomic_load_n(&m->threads.progress, __ATOMIC_ACQUIRE);
    uint64_t done = rv_hart_run(h, VM_THREAD_SLICE);
    vm_hart_update_mtip(m, ht->index);
    vm_thread_poll_htif(m, h);
    vm_hart_after_run(m, ht, seen, done);
  }
  vm_threads *t = &m->threads;
  pthread_mutex_lock(&t->sched_lock);
  t->live--;
  pthread_cond_broadcast(&t->parked_cv);
  pthread_mutex_unlock(&t->sched_lock);
  return NULL;
}

/* ------------------------------------------------------------------ the I/O thread */

static void vm_io_drain_kicks(vm *m) {
  __atomic_store_n(&m->threads.kicked, false, __ATOMIC_SEQ_CST);
  uint64_t n;
  if (read(m->threads.kick_fd, &n, sizeof(n)) < 0) {
    /* nothing was pending */
  }
}

/* One round of the I/O thread: prepare the sources and wait for them (big lock dropped while
 * waiting), then serve what became ready and the timers the harts do not keep themselves. */
static void vm_io_round(vm *m) {
  vm_pollset *ps = &m->pollset;
  ps->n = 0;
  ps->timeout_ns = m->paused ? INT64_MAX : VM_THREAD_MAX_SLEEP_NS;
  for (unsigned i = 0; i < m->num_io_sources; i++)
    m->io_sources[i].prepare(m->io_sources[i].opaque, ps);
  int64_t rtc = rtc_ns_until_alarm(&m->rtc);
  if (!m->paused)
    vm_pollset_wake_within(ps, rtc);
  int kick_idx = vm_pollset_add(ps, m->threads.kick_fd, POLLIN);
  bool forever = ps->timeout_ns == INT64_MAX;
  struct timespec ts = {ps->timeout_ns / 1000000000, ps->timeout_ns % 1000000000};
  pthread_mutex_unlock(&m->threads.big_lock);
  int ready = ppoll(ps->fds, ps->n, forever ? NULL : &ts, NULL);
  pthread_mutex_lock(&m->threads.big_lock);
  if (ready <= 0)
    ps->n = 0; /* timeout or signal: nothing to dispatch */
  if (vm_pollset_revents(ps, kick_idx))
    vm_io_drain_kicks(m);
  for (unsigned i = 0; i < m->num_io_sources && ps->n; i++)
    m->io_sources[i].dispatch(m->io_sources[i].opaque, ps);
  rtc_update(&m->rtc);
}

static int vm_start_hart_threads(vm *m, vs_error **err) {
  vm_threads *t = &m->threads;
  for (unsigned h = 0; h < m->nharts; h++) {
    vm_hart_thread *ht = &t->harts[h];
    pthread_mutex_lock(&t->sched_lock);
    t->live++;
    pthread_mutex_unlock(&t->sched_lock);
    int rc = pthread_create(&ht->thread, NULL, vm_hart_thread_main, ht);
    if (rc != 0) {
      pthread_mutex_lock(&t->sched_lock);
      t->live--;
      pthread_mutex_unlock(&t->sched_lock);
      return vs_error_set(err, rc, "start the thread of hart %u", h);
    }
    ht->started = true;
  }
  return 0;
}

static void vm_join_hart_threads(vm *m) {
  vm_threads *t = &m->threads;
  vm_wake_all_harts(m);
  for (unsigned h = 0; h < m->nharts; h++) {
    if (t->harts[h].started)
      pthread_join(t->harts[h].thread, NULL);
    t->harts[h].started = false;
  }
}

int vm_run_threaded(vm *m, vs_error **err) {
  vm_threads *t = &m->threads;
  pthread_mutex_lock(&t->big_lock);
  t->io_running = true;
  /* paused before the run began (a debugger's start-stopped): the harts park before their first
   * instruction, and vm_resume's vm_release_harts lets them go */
  if (m->paused)
    t->stop_requests++;
  int rc = vm_start_hart_threads(m, err);
  if (rc < 0)
    vm_request_exit(m, VM_EXIT_FAIL, 1);
  while (!vm_stopping(m))
    vm_io_round(m);
  /* harts parked by a pause stay parked until they see the stop */
  t->io_running = false;
  pthread_mutex_unlock(&t->big_lock);
  vm_join_hart_threads(m);
  return rc;
}
