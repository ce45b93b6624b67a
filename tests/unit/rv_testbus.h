/* A minimal machine for the cpu tests: RAM at 0x8000_0000, a CLINT-like timer/software-interrupt
 * block at 0x0200_0000 (MSIP, MTIMECMP, MTIME), HTIF through tohost/fromhost. The real machine is
 * src/vm/machine.c; this one only exists so the hart can be tested on its own. */
#ifndef VESSEL_TEST_RV_TESTBUS_H
#define VESSEL_TEST_RV_TESTBUS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "vm/cpu/cpu.h"
#include "vm/dev/htif.h"
#include "vm/elf.h"

#define TB_RAM_BASE 0x80000000ull
#define TB_CLINT 0x02000000ull

typedef struct testbus {
  rv_bus bus;
  rv_hart hart;
  uint64_t mtimecmp;
  uint64_t t0_ns;
  htif ht;
  bool has_htif;
} testbus;

static uint64_t tb_mtime(void *opaque) {
  testbus *tb = opaque;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
  return (ns - tb->t0_ns) / 100; /* 10 MHz */
}

static bool tb_mmio_read(void *opaque, uint64_t pa, unsigned size, uint64_t *val) {
  testbus *tb = opaque;
  if (pa == TB_CLINT && size == 4) {
    *val = (__atomic_load_n(&tb->hart.ext_mip, __ATOMIC_RELAXED) & RV_MIP_MSIP) ? 1 : 0;
    return true;
  }
  if (pa == TB_CLINT + 0x4000 && size == 8) {
    *val = tb->mtimecmp;
    return true;
  }
  if (pa == TB_CLINT + 0xbff8 && size == 8) {
    *val = tb_mtime(tb);
    return true;
  }
  return false;
}

static void tb_update_mtip(testbus *tb) {
  rv_hart_set_irq(&tb->hart, RV_MIP_MTIP, tb_mtime(tb) >= tb->mtimecmp);
}

static bool tb_mmio_write(void *opaque, uint64_t pa, unsigned size, uint64_t val) {
  testbus *tb = opaque;
  if (pa == TB_CLINT && size == 4) {
    rv_hart_set_irq(&tb->hart, RV_MIP_MSIP, val & 1);
    return true;
  }
  if (pa == TB_CLINT + 0x4000 && size == 8) {
    tb->mtimecmp = val;
    tb_update_mtip(tb);
    return true;
  }
  return false;
}

/* interpreter: run the hart in the interpreter only (rv_bus.interpreter), else the default
 * engine (the translator where the host has one). */
static inline int tb_init_engine(testbus *tb, uint64_t ram_size, bool interpreter, vs_error **err) {
  memset(tb, 0, sizeof(*tb));
  void *ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ram == MAP_FAILED)
    return vs_error_set(err, 12, "mmap guest RAM");
  tb->bus.ram = ram;
  tb->bus.ram_base = TB_RAM_BASE;
  tb->bus.ram_size = ram_size;
  tb->bus.opaque = tb;
  tb->bus.mmio_read = tb_mmio_read;
  tb->bus.mmio_write = tb_mmio_write;
  tb->bus.read_mtime = tb_mtime;
  tb->bus.code_pages = calloc(ram_size / 4096, sizeof(uint32_t));
  tb->mtimecmp = UINT64_MAX;
  tb->t0_ns = 0;
  tb->t0_ns = tb_mtime(tb) * 100;
  tb->bus.interpreter = interpreter;
  return rv_hart_init(&tb->hart, 0, &tb->bus, err);
}

static inline int tb_init(testbus *tb, uint64_t ram_size, vs_error **err) {
  return tb_init_engine(tb, ram_size, false, err);
}

static inline void tb_destroy(testbus *tb) {
  rv_hart_destroy(&tb->hart);
  free(tb->bus.code_pages);
  munmap(tb->bus.ram, tb->bus.ram_size);
}

/* Run until HTIF exit or max_insns; returns the exit code, or -1 on timeout. */
static inline int tb_run(testbus *tb, uint64_t max_insns) {
  uint64_t total = 0;
  if (getenv("RV_TRACE")) {
    /* Debug aid: one instruction at a time, printing each pc. */
    for (; total < max_insns && total < 2000000; total++) {
      fprintf(stderr, "pc=%llx priv=%d mcause=%llx mtval=%llx\n", (unsigned long long)tb->hart.pc,
              tb->hart.priv, (unsigned long long)tb->hart.mcause,
              (unsigned long long)tb->hart.mtval);
      rv_hart_run(&tb->hart, 1);
      int code;
      uint64_t request;
      if (tb->has_htif && htif_poll(&tb->ht, tb->bus.ram, tb->bus.ram_base, tb->bus.ram_size, -1,
                                    &code, &request) != HTIF_NOTHING)
        return code;
    }
    return -1;
  }
  while (total < max_insns) {
    total += rv_hart_run(&tb->hart, 100000);
    int code;
    uint64_t request;
    if (tb->has_htif && htif_poll(&tb->ht, tb->bus.ram, tb->bus.ram_base, tb->bus.ram_size, -1,
                                  &code, &request) != HTIF_NOTHING)
      return code;
    tb_update_mtip(tb);
    if (tb->hart.wfi) {
      struct timespec ts = {0, 100000};
      nanosleep(&ts, NULL);
      total += 1000; /* an idle guest still uses up its budget */
    }
  }
  return -1;
}

#endif
