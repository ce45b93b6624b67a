/* Runs the guest test programs (tests/guest, built with riscv64-unknown-elf-gcc) on the real hart:
 * each ELF is loaded with the ELF loader and must end through HTIF with exit code 0. A failing
 * program reports the source line of its failing check.
 *
 *   test_cpu_guest [--interp] ELF...
 *
 * --interp runs the programs in the interpreter (rv_bus.interpreter) instead of the default
 * engine, so that both engines pass every program (meson registers cpu_guest and
 * cpu_guest_interp). */
#include <stdio.h>

#include "rv_testbus.h"

static int run_one(const char *path, bool interp, int *line) {
  _cleanup_error_ vs_error *err = NULL;
  uint8_t *buf = NULL;
  size_t len = 0;
  FILE *f = fopen(path, "rb");
  if (!f)
    return -2;
  buf = malloc(4 << 20);
  len = fread(buf, 1, 4 << 20, f);
  fclose(f);
  testbus tb;
  if (tb_init_engine(&tb, 64 << 20, interp, &err) < 0) {
    free(buf);
    return -3;
  }
  rv_elf_image img;
  if (rv_elf_load(buf, len, tb.bus.ram, tb.bus.ram_base, tb.bus.ram_size, &img, &err) < 0 ||
      !img.has_tohost) {
    fprintf(stderr, "# %s: %s\n", path, err ? err->msg : "no tohost symbol");
    free(buf);
    tb_destroy(&tb);
    return -4;
  }
  free(buf);
  htif_init(&tb.ht, img.tohost, img.has_fromhost, img.fromhost);
  tb.has_htif = true;
  rv_hart_reset(&tb.hart, img.entry, RV_PRIV_M);
  int code = tb_run(&tb, 500000000ull);
  if (code != 0)
    fprintf(stderr, "# %s: pc=0x%llx mcause=0x%llx mepc=0x%llx mtval=0x%llx\n", path,
            (unsigned long long)tb.hart.pc, (unsigned long long)tb.hart.mcause,
            (unsigned long long)tb.hart.mepc, (unsigned long long)tb.hart.mtval);
  *line = code;
  tb_destroy(&tb);
  return code == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
  int first = 1;
  bool interp = false;
  if (argc > 1 && strcmp(argv[1], "--interp") == 0) {
    interp = true;
    first = 2;
  }
  printf("1..%d\n", argc - first);
  int failed = 0;
  for (int i = first; i < argc; i++) {
    const char *name = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
    int line = 0;
    int r = run_one(argv[i], interp, &line);
    if (r == 0) {
      printf("ok %d - %s%s\n", i - first + 1, name, interp ? " (interpreter)" : "");
    } else {
      failed++;
      if (line > 0)
        printf("not ok %d - %s # failed check at source line %d\n", i - first + 1, name, line);
      else
        printf("not ok %d - %s # did not finish (%d)\n", i - first + 1, name, r == -1 ? line : r);
    }
    fflush(stdout);
  }
  return failed ? 1 : 0;
}
