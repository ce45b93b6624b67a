/* Not a test of the hart: the program tests/integration/test_gdb.py debugs (crt_smp.S start-up,
 * so it runs on any number of harts: hart 0 works, the others sleep). It passes (exit 0) only
 * when the debugger, stopped in gdb_add, set gdb_counter to 0; alone it exits with 5. */
volatile long gdb_counter = 5;

long __attribute__((noinline)) gdb_add(long a, long b) { return a + b + gdb_counter; }

long smp_main(long hartid);
long smp_main(long hartid) {
  if (hartid != 0)
    return 0;
  return gdb_add(30, 12) - 42;
}
