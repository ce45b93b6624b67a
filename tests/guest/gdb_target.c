/* Not a test of the hart: the program tests/integration/test_gdb.py debugs (crt_smp.S start-up,
 * so it runs on any number of harts: hart 0 works, the others sleep). It passes (exit 0) only
 * when the debugger, stopped in gdb_add, set gdb_counter to 0; alone it exits with 5. Before
 * that, gdb_fill writes gdb_watched three times (10, 20, 30) and smp_main reads it once, for the
 * watchpoints. */
volatile long gdb_counter = 5;
volatile long gdb_watched;

void __attribute__((noinline)) gdb_fill(void) {
  for (long i = 1; i <= 3; i++)
    gdb_watched = i * 10;
}

long __attribute__((noinline)) gdb_add(long a, long b) { return a + b + gdb_counter; }

long smp_main(long hartid);
long smp_main(long hartid) {
  if (hartid != 0)
    return 0;
  gdb_fill();
  long seen = gdb_watched;
  return gdb_add(30, 12) - 42 + (seen - 30);
}
