/* The program's entry point in static builds: the protected re-execution of src/ctr/selfexe.c,
 * done before the C library starts.
 *
 * Commands that put processes into a container (create, run, exec) first re-execute the
 * runtime from a read-only mount of itself (CVE-2019-5736, see selfexe.c). Done from main(),
 * that costs a whole start of the C library in the image that is thrown away, and on the
 * virtualised hosts this project runs on every page a new process touches is expensive: a
 * static "return 0" program takes 2.4 ms where one that only calls exit takes 0.4. So this
 * entry point makes the three system calls of the re-execution right away, with nothing but
 * the kernel's initial stack, and otherwise jumps to the C library's _start.
 *
 * Nothing here is needed for safety: main() re-checks and re-executes (or falls back to the
 * memfd copy) whenever this did not happen. Hence every doubt here (an option it does not
 * know, an error) just means "leave it to main()". The code runs before TLS and the stack
 * protector's canary exist: no C library calls, no stack protector. */
#if defined(__x86_64__) && defined(VESSEL_EARLY_ENTRY)

#include <fcntl.h>
#include <linux/mount.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>

#define NO_CANARY __attribute__((no_stack_protector, used))
/* Inlined into vessel_early_reexec() at any optimisation level: no canary, no call. */
#define INLINE static inline __attribute__((always_inline))

INLINE long raw_syscall(long n, long a, long b, long c, long d, long e) {
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                   : "rcx", "r11", "memory");
  return ret;
}

INLINE bool str_eq(const char *a, const char *b) {
  while (*a && *a == *b)
    a++, b++;
  return *a == *b;
}

INLINE bool str_starts(const char *s, const char *prefix) {
  while (*prefix)
    if (*s++ != *prefix++)
      return false;
  return true;
}

/* The global options of main() that take a value in the next argument. */
INLINE bool takes_value(const char *opt) {
  return str_eq(opt, "--root") || str_eq(opt, "--log") || str_eq(opt, "--log-format") ||
         str_eq(opt, "--rootless") || str_eq(opt, "--criu");
}

/* The command name, or NULL when the global options are anything but the plain forms. */
INLINE const char *command_of(char **argv) {
  for (int i = 1; argv[i]; i++) {
    const char *a = argv[i];
    if (a[0] != '-')
      return a;
    if (!str_starts(a, "--"))
      return NULL;
    bool has_value = false;
    for (const char *p = a; *p; p++)
      if (*p == '=')
        has_value = true;
    if (has_value)
      continue;
    if (takes_value(a)) {
      if (!argv[++i])
        return NULL;
    } else if (!str_eq(a, "--debug") && !str_eq(a, "--systemd-cgroup")) {
      return NULL;
    }
  }
  return NULL;
}

INLINE bool exe_is_protected(void) {
  long fd = raw_syscall(SYS_open, (long)"/proc/self/exe", O_RDONLY | O_CLOEXEC, 0, 0, 0);
  if (fd < 0)
    return true; /* cannot tell: let main() decide */
  const long all_seals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
  long seals = raw_syscall(SYS_fcntl, fd, F_GET_SEALS, 0, 0, 0);
  struct statfs sf;
  sf.f_flags = 0; /* no "= {0}": that may become a call to memset, not resolved yet */
  long r = raw_syscall(SYS_fstatfs, fd, (long)&sf, 0, 0, 0);
  raw_syscall(SYS_close, fd, 0, 0, 0, 0);
  if (seals >= 0 && (seals & all_seals) == all_seals)
    return true;
  return r < 0 || (sf.f_flags & ST_RDONLY);
}

static const struct mount_attr readonly = {
    .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
};

NO_CANARY void vessel_early_reexec(long *sp);
NO_CANARY void vessel_early_reexec(long *sp) {
  char **argv = (char **)(sp + 1);
  char **envp = argv + sp[0] + 1;
  for (char **e = envp; *e; e++)
    if (str_starts(*e, "VESSEL_RUNTIME_SEAL="))
      return; /* a forced way of sealing: main() */
  const char *cmd = command_of(argv);
  if (!cmd || !(str_eq(cmd, "create") || str_eq(cmd, "run") || str_eq(cmd, "exec")))
    return;
  if (exe_is_protected())
    return;
  long fd = raw_syscall(SYS_open_tree, AT_FDCWD, (long)"/proc/self/exe",
                        OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC, 0, 0);
  if (fd < 0)
    return;
  if (raw_syscall(SYS_mount_setattr, fd, (long)"", AT_EMPTY_PATH, (long)&readonly,
                  sizeof(readonly)) == 0)
    raw_syscall(SYS_execveat, fd, (long)"", (long)argv, (long)envp, AT_EMPTY_PATH);
  raw_syscall(SYS_close, fd, 0, 0, 0, 0);
}

/* The kernel enters with %rsp at argc and %rdx = 0 (no dynamic linker's fini function);
 * _start expects exactly that again. */
__asm__(".text\n"
        ".globl vessel_runtime_entry\n"
        ".type vessel_runtime_entry, @function\n"
        "vessel_runtime_entry:\n"
        "  mov %rsp, %r12\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call vessel_early_reexec\n"
        "  mov %r12, %rsp\n"
        "  xor %edx, %edx\n"
        "  jmp _start\n"
        ".size vessel_runtime_entry, .-vessel_runtime_entry\n");

#endif
