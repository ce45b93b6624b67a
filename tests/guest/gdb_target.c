/* Not a test of the hart: the program tests/integration/test_gdb.py debugs. It passes (exit 0)
 * only when the debugger, stopped in gdb_add, set gdb_counter to 0; alone it exits with 5. */
#include "test.h"

volatile long gdb_counter = 5;

long __attribute__((noinline)) gdb_add(long a, long b) { return a + b + gdb_counter; }

int main(void) { return (int)(gdb_add(30, 12) - 42); }
