/* The built-in SBI (--bios builtin): the machine answers the kernel's ECALLs from S-mode itself
 * instead of running M-mode firmware. Implements SBI 2.0 Base, TIME, IPI, RFENCE, HSM, SRST and
 * DBCN, plus the legacy console and shutdown calls that early boot code may still use.
 *
 * Calling convention: a7 = extension id, a6 = function id, a0..a5 = arguments; the call returns
 * an error code in a0 and a value in a1 (legacy extensions: a single value in a0).
 *
 * With a host thread per hart the call runs on the calling hart's thread: IPI and RFENCE post
 * requests to the other harts (cpu.h) without the big lock, since RFENCE waits for them; the rest
 * touches devices and HSM state and runs under the big lock.
 */
#include <sched.h>
#include <string.h>

#include "vm/machine.h"

enum {
  SBI_SUCCESS = 0,
  SBI_ERR_FAILED = -1,
  SBI_ERR_NOT_SUPPORTED = -2,
  SBI_ERR_INVALID_PARAM = -3,
  SBI_ERR_INVALID_ADDRESS = -5,
  SBI_ERR_ALREADY_AVAILABLE = -6,
  SBI_ERR_ALREADY_STOPPED = -8,
};

#define SBI_EXT_LEGACY_SET_TIMER 0x00
#define SBI_EXT_LEGACY_PUTCHAR 0x01
#define SBI_EXT_LEGACY_GETCHAR 0x02
#define SBI_EXT_LEGACY_SHUTDOWN 0x08
#define SBI_EXT_BASE 0x10
#define SBI_EXT_TIME 0x54494D45
#define SBI_EXT_IPI 0x735049
#define SBI_EXT_RFENCE 0x52464E43
#define SBI_EXT_HSM 0x48534D
#define SBI_EXT_SRST 0x53525354
#define SBI_EXT_DBCN 0x4442434E

#define SBI_SPEC_VERSION ((2u << 24) | 0u) /* 2.0 */
/* Implementation id: not one of the ids registered in the SBI spec. */
#define SBI_IMPL_ID 0x7665u
#define SBI_IMPL_VERSION 1u

#define HSM_SUSPEND_RETENTIVE 0x00000000u

#define SRST_SHUTDOWN 0
#define SRST_COLD_REBOOT 1
#define SRST_WARM_REBOOT 2
#define SRST_REASON_FAILURE 1

typedef struct sbi_ret {
  int64_t error;
  uint64_t value;
} sbi_ret;

static sbi_ret sbi_ok(uint64_t value) { return (sbi_ret){SBI_SUCCESS, value}; }
static sbi_ret sbi_err(int64_t e) { return (sbi_ret){e, 0}; }

static unsigned sbi_hart_index(const vm *m, const rv_hart *hart) {
  return (unsigned)(hart - m->harts);
}

/* Make the calling hart leave rv_hart_run() soon (after an SBI call changed what it should do). */
static void sbi_kick(rv_hart *h) { h->check_irq = true; }

/* Tell another hart to look at what was posted to it: on one thread it leaves its block at its
 * next turn; on its own thread it wakes if it sleeps, and its run is cut short if it runs. */
static void sbi_notify(vm *m, unsigned h) {
  if (m->threads.on)
    vm_wake_hart(m, h);
  else
    sbi_kick(&m->harts[h]);
}

/* The set of harts named by (hart_mask, hart_mask_base); base == -1 means all harts. */
static int sbi_hart_set(const vm *m, uint64_t mask, uint64_t base, uint32_t *out) {
  if (base == UINT64_MAX) {
    *out = (1U << m->nharts) - 1;
    return 0;
  }
  uint32_t set = 0;
  for (unsigned i = 0; i < 64 && mask; i++, mask >>= 1) {
    if (!(mask & 1))
      continue;
    if (base + i < base || base + i >= m->nharts)
      return -1;
    set |= 1U << (base + i);
  }
  *out = set;
  return 0;
}

static bool sbi_extension_exists(uint64_t eid) {
  switch (eid) {
  case SBI_EXT_LEGACY_SET_TIMER:
  case SBI_EXT_LEGACY_PUTCHAR:
  case SBI_EXT_LEGACY_GETCHAR:
  case SBI_EXT_LEGACY_SHUTDOWN:
  case SBI_EXT_BASE:
  case SBI_EXT_TIME:
  case SBI_EXT_IPI:
  case SBI_EXT_RFENCE:
  case SBI_EXT_HSM:
  case SBI_EXT_SRST:
  case SBI_EXT_DBCN:
    return true;
  default:
    return false;
  }
}

static sbi_ret sbi_base(uint64_t fid, const uint64_t *a) {
  switch (fid) {
  case 0:
    return sbi_ok(SBI_SPEC_VERSION);
  case 1:
    return sbi_ok(SBI_IMPL_ID);
  case 2:
    return sbi_ok(SBI_IMPL_VERSION);
  case 3:
    return sbi_ok(sbi_extension_exists(a[0]) ? 1 : 0);
  case 4: /* mvendorid, marchid, mimpid: the hart reports zero for all three */
  case 5:
  case 6:
    return sbi_ok(0);
  default:
    return sbi_err(SBI_ERR_NOT_SUPPORTED);
  }
}

static sbi_ret sbi_ipi(vm *m, uint64_t fid, const uint64_t *a) {
  if (fid != 0)
    return sbi_err(SBI_ERR_NOT_SUPPORTED);
  uint32_t set;
  if (sbi_hart_set(m, a[0], a[1], &set) < 0)
    return sbi_err(SBI_ERR_INVALID_PARAM);
  for (unsigned h = 0; h < m->nharts; h++) {
    if (!(set & (1U << h)))
      continue;
    /* SSIP is a software-writable bit of mip: the guest clears it through sip */
    rv_hart_post_mip(&m->harts[h], RV_MIP_SSIP);
    sbi_notify(m, h);
  }
  return sbi_ok(0);
}

/* Harts on their own threads: ask each hart of `set` but the caller for a TLB flush and wait
 * until all have done it (the kernel frees page tables after the call returns). While waiting the
 * caller serves flushes asked of itself, so two harts fencing each other at once both finish; a
 * hart parked by a stop-the-world request still serves them. */
static void sbi_remote_tlb_flush(vm *m, rv_hart *self, uint32_t set) {
  uint32_t tickets[VM_MAX_SMP] = {0};
  for (unsigned h = 0; h < m->nharts; h++) {
    if (!(set & (1U << h)) || &m->harts[h] == self)
      continue;
    tickets[h] = vm_hart_ask_tlb_flush(m, h);
  }
  if (set & (1U << sbi_hart_index(m, self)))
    rv_hart_flush_tlb(self);
  for (unsigned h = 0; h < m->nharts; h++) {
    if (!(set & (1U << h)) || &m->harts[h] == self)
      continue;
    while (!rv_hart_tlb_flushed(&m->harts[h], tickets[h]) &&
           !__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE)) {
      rv_hart_serve_requests(self);
      sched_yield();
    }
  }
}

static sbi_ret sbi_rfence(vm *m, rv_hart *self, uint64_t fid, const uint64_t *a) {
  /* 3..6: the remote HFENCE.GVMA/VVMA of harts with the hypervisor extension; the hart's TLB
   * holds guest translations too, so they flush it as SFENCE.VMA does */
  if (fid > 6 || (fid > 2 && m->cfg.no_hypervisor))
    return sbi_err(SBI_ERR_NOT_SUPPORTED);
  uint32_t set;
  if (sbi_hart_set(m, a[0], a[1], &set) < 0)
    return sbi_err(SBI_ERR_INVALID_PARAM);
  /* a remote FENCE.I has nothing to do: decoded code follows every write to its page, and the
   * caller gave up its write mappings of code pages when it entered the call */
  if (fid == 0)
    return sbi_ok(0);
  if (m->threads.on) {
    sbi_remote_tlb_flush(m, self, set);
    return sbi_ok(0);
  }
  /* the harts run on this thread, so the remote fence completes before the call returns */
  for (unsigned h = 0; h < m->nharts; h++)
    if (set & (1U << h))
      rv_hart_flush_tlb(&m->harts[h]);
  return sbi_ok(0);
}

static sbi_ret sbi_hsm(vm *m, rv_hart *self, uint64_t fid, const uint64_t *a) {
  unsigned me = sbi_hart_index(m, self);
  switch (fid) {
  case 0: { /* hart_start(hartid, start_addr, opaque) */
    if (a[0] >= m->nharts)
      return sbi_err(SBI_ERR_INVALID_PARAM);
    unsigned h = (unsigned)a[0];
    if (vm_hsm_state(m, h) != HSM_STOPPED)
      return sbi_err(SBI_ERR_ALREADY_AVAILABLE);
    if (!vm_ram_range_ok(m, a[1], 4))
      return sbi_err(SBI_ERR_INVALID_ADDRESS);
    m->hsm_start_addr[h] = a[1];
    m->hsm_start_opaque[h] = a[2];
    vm_hart_start(m, h);
    return sbi_ok(0);
  }
  case 1: /* hart_stop() */
    if (vm_hsm_state(m, me) != HSM_STARTED)
      return sbi_err(SBI_ERR_FAILED);
    vm_set_hsm_state(m, me, HSM_STOPPED);
    __atomic_store_n(&self->stop_request, true, __ATOMIC_RELAXED);
    sbi_kick(self);
    return sbi_ok(0);
  case 2: /* hart_get_status(hartid) */
    if (a[0] >= m->nharts)
      return sbi_err(SBI_ERR_INVALID_PARAM);
    return sbi_ok(vm_hsm_state(m, (unsigned)a[0]));
  case 3: /* hart_suspend(type, resume_addr, opaque) */
    if ((uint32_t)a[0] != HSM_SUSPEND_RETENTIVE)
      return sbi_err(SBI_ERR_NOT_SUPPORTED);
    /* a retentive suspend behaves as WFI: resume after the call once an interrupt is pending */
    self->wfi = true;
    sbi_kick(self);
    return sbi_ok(0);
  default:
    return sbi_err(SBI_ERR_NOT_SUPPORTED);
  }
}

static sbi_ret sbi_srst(vm *m, uint64_t fid, const uint64_t *a) {
  if (fid != 0)
    return sbi_err(SBI_ERR_NOT_SUPPORTED);
  uint32_t type = (uint32_t)a[0], reason = (uint32_t)a[1];
  if (type > SRST_WARM_REBOOT && type < 0xf0000000U)
    return sbi_err(SBI_ERR_INVALID_PARAM);
  if (type > SRST_WARM_REBOOT)
    return sbi_err(SBI_ERR_NOT_SUPPORTED); /* vendor-specific types */
  if (type == SRST_SHUTDOWN && reason == SRST_REASON_FAILURE)
    vm_request_exit(m, VM_EXIT_FAIL, 1);
  else if (type == SRST_SHUTDOWN)
    vm_request_exit(m, VM_EXIT_POWEROFF, 0);
  else
    vm_request_exit(m, VM_EXIT_RESET, 0); /* stops every hart */
  return sbi_ok(0);
}

static sbi_ret sbi_dbcn(vm *m, uint64_t fid, const uint64_t *a) {
  switch (fid) {
  case 0:   /* console_write(num_bytes, base_lo, base_hi) */
  case 1: { /* console_read(num_bytes, base_lo, base_hi) */
    if (a[2] != 0 || !vm_ram_range_ok(m, a[1], a[0]))
      return sbi_err(SBI_ERR_INVALID_PARAM);
    uint8_t *p = vm_ram_ptr(m, a[1]);
    if (fid == 0) {
      uart_console_write(&m->uart, p, a[0]);
      return sbi_ok(a[0]);
    }
    vm_ram_mark_dirty(m, a[1], a[0]);
    return sbi_ok(uart_console_read(&m->uart, p, a[0]));
  }
  case 2: { /* console_write_byte(byte) */
    uint8_t c = (uint8_t)a[0];
    uart_console_write(&m->uart, &c, 1);
    return sbi_ok(0);
  }
  default:
    return sbi_err(SBI_ERR_NOT_SUPPORTED);
  }
}

/* Legacy (SBI v0.1) calls return a single value in a0. */
static bool sbi_legacy(vm *m, rv_hart *hart, uint64_t eid, const uint64_t *a) {
  switch (eid) {
  case SBI_EXT_LEGACY_SET_TIMER:
    hart->stimecmp = a[0];
    hart->x[10] = 0;
    return true;
  case SBI_EXT_LEGACY_PUTCHAR: {
    uint8_t c = (uint8_t)a[0];
    uart_console_write(&m->uart, &c, 1);
    hart->x[10] = 0;
    return true;
  }
  case SBI_EXT_LEGACY_GETCHAR: {
    uint8_t c;
    hart->x[10] = uart_console_read(&m->uart, &c, 1) ? c : (uint64_t)-1;
    return true;
  }
  case SBI_EXT_LEGACY_SHUTDOWN:
    vm_request_exit(m, VM_EXIT_POWEROFF, 0);
    sbi_kick(hart);
    hart->x[10] = 0;
    return true;
  default:
    return false;
  }
}

/* The calls that post to other harts or touch only the caller need no lock (RFENCE must not
 * hold it while it waits). */
static bool sbi_needs_big_lock(uint64_t eid) {
  return eid != SBI_EXT_IPI && eid != SBI_EXT_RFENCE && eid != SBI_EXT_TIME &&
         eid != SBI_EXT_BASE && eid != SBI_EXT_LEGACY_SET_TIMER;
}

static bool vm_sbi_call_locked(vm *m, rv_hart *hart);

bool vm_sbi_call(void *opaque, rv_hart *hart) {
  vm *m = opaque;
  bool lock = sbi_needs_big_lock(hart->x[17]);
  if (lock)
    vm_big_lock(m);
  bool handled = vm_sbi_call_locked(m, hart);
  if (lock)
    vm_big_unlock(m);
  return handled;
}

static bool vm_sbi_call_locked(vm *m, rv_hart *hart) {
  uint64_t eid = hart->x[17], fid = hart->x[16];
  const uint64_t *a = &hart->x[10];
  if (m->cfg.trace && eid != SBI_EXT_TIME)
    fprintf(stderr, "vmm: hart %u sbi eid=0x%llx fid=%llu a0=0x%llx a1=0x%llx a2=0x%llx\n",
            sbi_hart_index(m, hart), (unsigned long long)eid, (unsigned long long)fid,
            (unsigned long long)a[0], (unsigned long long)a[1], (unsigned long long)a[2]);
  if (eid < SBI_EXT_BASE) {
    if (!sbi_legacy(m, hart, eid, a))
      hart->x[10] = (uint64_t)(int64_t)SBI_ERR_NOT_SUPPORTED;
    return true;
  }
  sbi_ret r;
  switch (eid) {
  case SBI_EXT_BASE:
    r = sbi_base(fid, a);
    break;
  case SBI_EXT_TIME:
    if (fid != 0) {
      r = sbi_err(SBI_ERR_NOT_SUPPORTED);
      break;
    }
    hart->stimecmp = a[0]; /* the hart raises STIP itself once mtime reaches it */
    r = sbi_ok(0);
    break;
  case SBI_EXT_IPI:
    r = sbi_ipi(m, fid, a);
    break;
  case SBI_EXT_RFENCE:
    r = sbi_rfence(m, hart, fid, a);
    break;
  case SBI_EXT_HSM:
    r = sbi_hsm(m, hart, fid, a);
    break;
  case SBI_EXT_SRST:
    r = sbi_srst(m, fid, a);
    break;
  case SBI_EXT_DBCN:
    r = sbi_dbcn(m, fid, a);
    break;
  default:
    r = sbi_err(SBI_ERR_NOT_SUPPORTED);
    break;
  }
  hart->x[10] = (uint64_t)r.error;
  hart->x[11] = r.value;
  return true;
}
