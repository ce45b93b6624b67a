/* TLB shootdown through SBI RFENCE (S-mode, vessel-vmm's built-in SBI, 2 harts): hart 1 keeps a
 * virtual page in its TLB; hart 0 points the page table entry at another page and asks the SBI to
 * flush hart 1's TLB for it (remote_sfence_vma). Once that call has returned, hart 1 must read the
 * new page without an SFENCE.VMA of its own. Many rounds, alternating between two pages. Prints
 * "RFENCE PASS" or "RFENCE FAIL <round>" and shuts down (SRST: failure as the reason on FAIL). */
#include <stdint.h>

#define ROUNDS 200
#define TEST_VA 0x40000000UL
#define PTE_V 0x1UL
#define PTE_RWX 0xeUL
#define PTE_A 0x40UL
#define PTE_D 0x80UL

static uint64_t root[512] __attribute__((aligned(4096)));
static uint64_t level1[512] __attribute__((aligned(4096)));
static volatile uint64_t level0[512] __attribute__((aligned(4096)));
static volatile uint64_t page_a[512] __attribute__((aligned(4096)));
static volatile uint64_t page_b[512] __attribute__((aligned(4096)));
static volatile uint64_t ready, go, done, seen __attribute__((aligned(64)));

struct sbiret {
  long error, value;
};

static struct sbiret sbi_call(long eid, long fid, long a0, long a1, long a2, long a3) {
  register long r0 __asm__("a0") = a0, r1 __asm__("a1") = a1, r2 __asm__("a2") = a2;
  register long r3 __asm__("a3") = a3, r6 __asm__("a6") = fid, r7 __asm__("a7") = eid;
  __asm__ volatile("ecall" : "+r"(r0), "+r"(r1) : "r"(r2), "r"(r3), "r"(r6), "r"(r7) : "memory");
  return (struct sbiret){r0, r1};
}

static void put(const char *s) {
  for (; *s; s++)
    sbi_call(1, 0, *s, 0, 0, 0); /* legacy console putchar */
}

static void put_num(uint64_t n) {
  char buf[24];
  int i = 23;
  buf[i] = 0;
  do {
    buf[--i] = (char)('0' + n % 10);
    n /= 10;
  } while (n);
  put(&buf[i]);
}

static void shutdown(int failed) { sbi_call(0x53525354, 0, 0, failed, 0, 0); }

static uint64_t leaf(volatile uint64_t *page) {
  return (((uint64_t)(uintptr_t)page >> 12) << 10) | PTE_V | PTE_RWX | PTE_A | PTE_D;
}

static void paging_on(void) {
  uint64_t satp = (8UL << 60) | ((uint64_t)(uintptr_t)root >> 12);
  __asm__ volatile("csrw satp, %0\n\tsfence.vma" ::"r"(satp) : "memory");
}

static void wait_for(volatile uint64_t *p, uint64_t v) {
  while (*p != v) {
    long dummy = 0;
    __asm__ volatile("div %0, %0, zero" : "+r"(dummy)); /* cpu_relax(): let the other hart run */
  }
  __asm__ volatile("fence r, rw" ::: "memory");
}

/* hart 1: keep the test page in the TLB, then read it once more when told to */
static void reader(void) {
  paging_on();
  volatile uint64_t *va = (volatile uint64_t *)TEST_VA;
  for (uint64_t r = 1; r <= ROUNDS; r++) {
    (void)*va; /* the current mapping enters the TLB */
    __asm__ volatile("fence rw, w" ::: "memory");
    ready = r;
    wait_for(&go, r);
    seen = *va;
    __asm__ volatile("fence rw, w" ::: "memory");
    done = r;
  }
}

long sbi_main(long hartid) {
  if (hartid == 1) {
    reader();
    return 0;
  }
  page_a[0] = 0xaaaa;
  page_b[0] = 0xbbbb;
  /* RAM (0x8000_0000, 1 GiB) identity-mapped by one gigapage; TEST_VA through two more levels */
  root[2] = ((0x80000000UL >> 12) << 10) | PTE_V | PTE_RWX | PTE_A | PTE_D;
  root[1] = (((uint64_t)(uintptr_t)level1 >> 12) << 10) | PTE_V;
  level1[0] = (((uint64_t)(uintptr_t)level0 >> 12) << 10) | PTE_V;
  level0[0] = leaf(page_a);
  paging_on();
  __asm__ volatile("fence rw, rw" ::: "memory");
  if (sbi_call(0x48534D, 0, 1, (long)(uintptr_t)0x80000000UL, 0, 0).error) { /* start hart 1 */
    put("RFENCE FAIL hart_start\n");
    shutdown(1);
  }
  for (uint64_t r = 1; r <= ROUNDS; r++) {
    wait_for(&ready, r);
    volatile uint64_t *next = (r & 1) ? page_b : page_a;
    level0[0] = leaf(next);
    __asm__ volatile("fence rw, rw" ::: "memory");
    /* remote_sfence_vma(hart_mask = hart 1, base 0, start, size) */
    if (sbi_call(0x52464E43, 1, 2, 0, (long)TEST_VA, 4096).error) {
      put("RFENCE FAIL call\n");
      shutdown(1);
    }
    __asm__ volatile("fence rw, w" ::: "memory");
    go = r;
    wait_for(&done, r);
    if (seen != next[0]) {
      put("RFENCE FAIL ");
      put_num(r);
      put("\n");
      shutdown(1);
    }
  }
  put("RFENCE PASS\n");
  shutdown(0);
  return 0;
}
