/* What guests really hold, and the balloons that give memory back when a pool gets tight
 * (docs/daemon.md "Held memory").
 *
 * A sampler thread measures every running guest every SAMPLE_PERIOD_MS: a VM by its VMM's
 * resident memory (what the host really backs of its RAM, with the VMM's own; the host's
 * figure, which a guest cannot talk down, unlike the balloon's statistics, which are the
 * guest's word), at most its Memory; a container by its cgroup's memory in use (docker stats'
 * figure). Admission then counts each guest's memory so:
 *   - a guest that does not run, or is not measured yet: its request (it may start at any
 *     moment, and starting is not admitted again);
 *   - a guaranteed VM: its request (it is never squeezed, so all of it stays its own);
 *   - a running container: what it holds, at least its request (nothing can take memory back
 *     from it);
 *   - a running burstable or best-effort VM whose balloon driver is up: what it holds; without
 *     the driver, its request (nothing can take memory back from it either).
 * Counting what VMs hold is sound only because it can be taken back: when what a pool's running
 * guests count passes RECLAIM_HIGH of its capacity (its cgroup's memory limit, past which the
 * host's OOM killer acts), the sampler lowers the balloon targets of its best-effort VMs, then
 * its burstable ones, the largest first, until they count RECLAIM_TO of the capacity, never
 * below squeeze_keep() of a VM; below RELEASE_BELOW they get it back. The guest gives its free
 * memory and page cache to the balloon (Linux's driver does not OOM-kill for it), the VMM
 * returns those pages to the host. The pool's cgroup stays the hard bound for a guest that
 * does not comply (or takes pages back under OOM: the device offers DEFLATE_ON_OOM). */
#include "daemon/vms.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SAMPLE_PERIOD_MS 2000
#define CTL_TIMEOUT_MS 2000
#define RECLAIM_HIGH 0.90
#define RECLAIM_TO 0.70
#define RELEASE_BELOW 0.60
#define SQUEEZE_KEEP_MIN (64LL << 20)
#define MIB (1LL << 20)
#define PAGE 4096LL

/* ---------------------------------------------------------------- what admission counts */

static int64_t vm_request(const vd_vm *vm) {
  return json_integer_value(json_object_get(json_object_get(vm->rec, "Config"), "Memory"));
}

static bool vm_squeezable(const vd_vm *vm) { return strcmp(vd_vm_qos(vm), "guaranteed") != 0; }

int64_t vd_vm_memory_counted_locked(const vd_vm *vm, int64_t *held) {
  int64_t request = vm_request(vm);
  bool measured = vm->pid > 0 && vm->held_pid == vm->pid;
  *held = measured ? ((int64_t)vm->held < request ? (int64_t)vm->held : request) : -1;
  if (!measured || !vm_squeezable(vm) || !vm->balloon_ready)
    return request;
  return *held;
}

int64_t vd_ctr_memory_counted_locked(vd_vms *t, const vd_container *c, int64_t *held) {
  double cpus;
  int64_t request;
  vd_pool_ctr_request(c->rec, &cpus, &request);
  json_t *h = c->state == VD_CTR_RUNNING ? json_object_get(t->ctr_held, c->id) : NULL;
  *held = h ? json_integer_value(h) : -1;
  return *held > request ? *held : request;
}

uint64_t vd_vm_balloon_goal_locked(const vd_vm *vm) {
  json_t *cfg = json_object_get(vm->rec, "Config");
  uint64_t goal = (uint64_t)json_integer_value(json_object_get(cfg, "Memory"));
  json_int_t user = json_integer_value(json_object_get(cfg, "MemoryTarget"));
  if (user > 0 && (uint64_t)user < goal)
    goal = (uint64_t)user;
  if (vm->squeeze && vm->squeeze < goal)
    goal = vm->squeeze;
  return goal;
}

/* ---------------------------------------------------------------- one sample */

typedef struct vm_probe {
  vd_vm *vm; /* kept allocated until the daemon ends, even when removed */
  pid_t pid;
  bool balloon; /* a burstable or best-effort VM: its balloon is asked too */
  bool answered, ready;
  uint64_t rss, target;
} vm_probe;

typedef struct sample {
  vm_probe *vms;
  size_t n_vms;
  char **ctrs; /* the running containers' ids */
  size_t n_ctrs;
  json_t *ctr_held;
} sample;

static bool sampler_stopping(vd_vms *t) {
  return __atomic_load_n(&t->sampler_stop, __ATOMIC_RELAXED);
}

/* Under the locks: the running guests. */
static void sample_list(vd_daemon *d, sample *s) {
  vd_vms *t = d->vms;
  pthread_mutex_lock(&d->lock);
  pthread_mutex_lock(&t->lock);
  s->vms = vs_malloc0(sizeof(*s->vms) * (t->n + 1));
  for (size_t i = 0; i < t->n; i++) {
    vd_vm *vm = t->vms[i];
    if (vm->pid <= 0 || vm->removed)
      continue;
    s->vms[s->n_vms++] = (vm_probe){.vm = vm, .pid = vm->pid, .balloon = vm_squeezable(vm)};
  }
  s->ctrs = vs_malloc0(sizeof(char *) * (d->n_ctrs + 1));
  for (size_t i = 0; i < d->n_ctrs; i++)
    if (d->ctrs[i]->state == VD_CTR_RUNNING && !d->ctrs[i]->removed)
      s->ctrs[s->n_ctrs++] = vs_strdup(d->ctrs[i]->id);
  pthread_mutex_unlock(&t->lock);
  pthread_mutex_unlock(&d->lock);
}

/* Without a lock: each VMM's resident memory (and a squeezable VM's balloon), each container's
 * cgroup. A VMM that does not answer in time counts as one without a balloon driver. */
static void sample_measure(vd_daemon *d, sample *s) {
  for (size_t i = 0; i < s->n_vms && !sampler_stopping(d->vms); i++) {
    vm_probe *p = &s->vms[i];
    uint64_t cpu_ns;
    vd_proc_usage(p->pid, &cpu_ns, &p->rss);
    if (!p->balloon)
      continue;
    json_t *r = NULL;
    vs_error *e = NULL;
    if (vd_vm_ctl_within(p->vm, json_pack("{s:s}", "command", "balloon"), CTL_TIMEOUT_MS, &r, &e) ==
        0) {
      p->answered = true;
      p->ready = json_is_true(json_object_get(r, "ready"));
      p->target = (uint64_t)json_integer_value(json_object_get(r, "target"));
    } else {
      vs_log_debug("vm %s: balloon: %s", p->vm->name, e->msg);
    }
    vs_error_free(e);
    json_decref(r);
  }
  s->ctr_held = json_object();
  for (size_t i = 0; i < s->n_ctrs && !sampler_stopping(d->vms); i++) {
    vs_error *e = NULL;
    json_t *st = ctr_stats(&d->rt, s->ctrs[i], &e);
    vs_error_free(e); /* it stopped since it was listed */
    json_t *data = json_object_get(st, "data");
    if (data)
      json_object_set_new(s->ctr_held, s->ctrs[i],
                          json_integer((json_int_t)vd_cgroup_memory_in_use(data)));
    json_decref(st);
  }
}

/* Under the locks: the figures into the VMs (those whose VMM is still the one measured) and
 * the containers' table. */
static void sample_apply_locked(vd_vms *t, sample *s) {
  for (size_t i = 0; i < s->n_vms; i++) {
    vm_probe *p = &s->vms[i];
    vd_vm *vm = p->vm;
    if (vm->pid != p->pid || p->rss == 0)
      continue;
    vm->held = p->rss;
    vm->held_pid = p->pid;
    vm->balloon_ready = p->balloon && p->answered && p->ready;
    if (p->answered)
      vm->balloon_target = p->target;
  }
  json_decref(t->ctr_held);
  t->ctr_held = s->ctr_held;
  s->ctr_held = NULL;
}

static void sample_free(sample *s) {
  free(s->vms);
  for (size_t i = 0; i < s->n_ctrs; i++)
    free(s->ctrs[i]);
  free(s->ctrs);
  json_decref(s->ctr_held);
}

/* ---------------------------------------------------------------- reclaim */

/* What a squeezed VM keeps at least: a quarter of its memory, and never less than 64 MiB. */
static int64_t squeeze_keep(int64_t request) {
  int64_t keep = request / 4 > SQUEEZE_KEEP_MIN ? request / 4 : SQUEEZE_KEEP_MIN;
  return keep < request ? keep : request;
}

/* Best-effort VMs give first, then burstable ones; the largest first within a class. */
static int squeeze_order(const void *a, const void *b) {
  const vd_vm *x = *(vd_vm *const *)a, *y = *(vd_vm *const *)b;
  int cx = strcmp(vd_vm_qos(x), "best-effort") == 0 ? 0 : 1;
  int cy = strcmp(vd_vm_qos(y), "best-effort") == 0 ? 0 : 1;
  if (cx != cy)
    return cx - cy;
  return x->held > y->held ? -1 : x->held < y->held;
}

/* What a squeezable VM counts toward the pool's pressure: what it holds, or the squeeze the
 * daemon asked of it when lower (its balloon is on its way there). */
static int64_t pressure_of(const vd_vm *vm, int64_t counted) {
  return vm->squeeze && (int64_t)vm->squeeze < counted ? (int64_t)vm->squeeze : counted;
}

static void squeeze(const char *pool, vd_vm **cand, size_t n, int64_t need) {
  qsort(cand, n, sizeof(vd_vm *), squeeze_order);
  for (size_t i = 0; i < n && need > 0; i++) {
    vd_vm *vm = cand[i];
    int64_t held, now = pressure_of(vm, vd_vm_memory_counted_locked(vm, &held));
    int64_t keep = squeeze_keep(vm_request(vm));
    if (now <= keep)
      continue;
    int64_t give = now - keep < need ? now - keep : need;
    int64_t target = (now - give) / MIB * MIB;
    if (target < keep)
      target = (keep + MIB - 1) / MIB * MIB;
    need -= now - target;
    vm->squeeze = (uint64_t)target;
    vs_log_info("pool %s is short of memory: VM %s (%s) keeps %lld MiB (its balloon takes the "
                "rest back)",
                pool, vm->name, vd_vm_qos(vm), (long long)(target >> 20));
  }
}

/* The room below RECLAIM_TO goes back to the squeezed VMs, the burstable ones first. */
static void release(const char *pool, vd_vm **cand, size_t n, int64_t room) {
  qsort(cand, n, sizeof(vd_vm *), squeeze_order);
  for (size_t k = n; k-- > 0 && room > 0;) {
    vd_vm *vm = cand[k];
    if (!vm->squeeze)
      continue;
    int64_t was = (int64_t)vm->squeeze;
    vm->squeeze = 0;
    int64_t full = (int64_t)vd_vm_balloon_goal_locked(vm); /* without a squeeze */
    if (was + room >= full) {
      room -= full - was;
      vs_log_info("pool %s has room again: VM %s gets its memory back", pool, vm->name);
      continue;
    }
    vm->squeeze = (uint64_t)((was + room) / MIB * MIB);
    room = 0;
  }
}

void vd_pool_reclaim_locked(vd_daemon *d, const char *name, json_t *pool) {
  vd_vms *t = d->vms;
  double cap = (double)json_integer_value(json_object_get(pool, "Memory"));
  vd_vm **cand = vs_malloc0(sizeof(vd_vm *) * (t->n + 1));
  size_t n = 0;
  int64_t pressure = 0, held;
  for (size_t i = 0; i < t->n; i++) {
    vd_vm *vm = t->vms[i];
    const char *p = json_string_value(json_object_get(json_object_get(vm->rec, "Config"), "Pool"));
    if (vm->pid <= 0 || vm->removed || strcmp(p ? p : VD_DEFAULT_POOL, name) != 0)
      continue;
    int64_t counted = vd_vm_memory_counted_locked(vm, &held);
    if (held >= 0 && vm_squeezable(vm) && (vm->balloon_ready || vm->squeeze)) {
      cand[n++] = vm;
      counted = pressure_of(vm, counted);
    }
    pressure += counted;
  }
  for (size_t i = 0; i < d->n_ctrs; i++) {
    vd_container *c = d->ctrs[i];
    const char *p = vd_pool_ctr_name(c->rec);
    if (c->state == VD_CTR_RUNNING && !c->removed && !strcmp(p ? p : VD_DEFAULT_POOL, name))
      pressure += vd_ctr_memory_counted_locked(t, c, &held);
  }
  if ((double)pressure > cap * RECLAIM_HIGH) {
    vs_log_debug("pool %s: its running guests count %lld of %lld MiB; %zu VMs can give", name,
                 (long long)(pressure >> 20), (long long)((int64_t)cap >> 20), n);
    squeeze(name, cand, n, pressure - (int64_t)(cap * RECLAIM_TO));
  } else if ((double)pressure < cap * RELEASE_BELOW)
    release(name, cand, n, (int64_t)(cap * RECLAIM_TO) - pressure);
  free(cand);
}

typedef struct balloon_order {
  vd_vm *vm;
  uint64_t goal;
} balloon_order;

/* Measure, account, decide; then tell the VMMs whose balloon target is not what it should be. */
static void sample_pass(vd_daemon *d) {
  vd_vms *t = d->vms;
  sample s = {0};
  sample_list(d, &s);
  sample_measure(d, &s);
  balloon_order *orders = vs_malloc0(sizeof(*orders) * (s.n_vms + 1));
  size_t n_orders = 0;
  pthread_mutex_lock(&d->lock);
  pthread_mutex_lock(&t->lock);
  sample_apply_locked(t, &s);
  const char *name;
  json_t *pool;
  json_object_foreach(t->pools, name, pool) vd_pool_reclaim_locked(d, name, pool);
  for (size_t i = 0; i < s.n_vms; i++) {
    vd_vm *vm = s.vms[i].vm;
    if (vm->pid != s.vms[i].pid || !vm->balloon_ready)
      continue;
    uint64_t goal = vd_vm_balloon_goal_locked(vm);
    if (goal / PAGE != vm->balloon_target / PAGE)
      orders[n_orders++] = (balloon_order){vm, goal};
  }
  pthread_mutex_unlock(&t->lock);
  pthread_mutex_unlock(&d->lock);
  for (size_t i = 0; i < n_orders && !sampler_stopping(t); i++) {
    vs_error *e = NULL;
    if (vd_vm_ctl_within(
            orders[i].vm,
            json_pack("{s:s, s:I}", "command", "balloon", "target", (json_int_t)orders[i].goal),
            CTL_TIMEOUT_MS, NULL, &e) < 0) {
      vs_log_warn("vm %s: balloon target %llu MiB: %s", orders[i].vm->name,
                  (unsigned long long)(orders[i].goal >> 20), e->msg);
      vs_error_free(e);
    }
  }
  free(orders);
  sample_free(&s);
}

/* ---------------------------------------------------------------- the thread */

static void *sampler_main(void *arg) {
  vd_daemon *d = arg;
  vd_vms *t = d->vms;
  for (;;) {
    pthread_mutex_lock(&t->lock);
    if (!sampler_stopping(t)) {
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_sec += SAMPLE_PERIOD_MS / 1000;
      until.tv_nsec += (SAMPLE_PERIOD_MS % 1000) * 1000000L;
      if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&t->sampler_cond, &t->lock, &until);
    }
    pthread_mutex_unlock(&t->lock);
    if (sampler_stopping(t))
      return NULL;
    sample_pass(d);
  }
}

void vd_pool_memory_start(vd_daemon *d) {
  vd_vms *t = d->vms;
  if (!t || t->sampler_running)
    return;
  __atomic_store_n(&t->sampler_stop, false, __ATOMIC_RELAXED);
  int r = pthread_create(&t->sampler, NULL, sampler_main, d);
  if (r != 0) {
    /* admission then counts every guest at its request, as without a sampler */
    vs_log_warn("start the pools' memory sampler: %s", strerror(r));
    return;
  }
  t->sampler_running = true;
}

void vd_pool_memory_stop(vd_daemon *d) {
  vd_vms *t = d->vms;
  if (!t || !t->sampler_running)
    return;
  pthread_mutex_lock(&t->lock);
  __atomic_store_n(&t->sampler_stop, true, __ATOMIC_RELAXED);
  pthread_cond_broadcast(&t->sampler_cond);
  pthread_mutex_unlock(&t->lock);
  pthread_join(t->sampler, NULL);
  t->sampler_running = false;
}
