/* A Linux program for the guest (riscv64, static, no libc: Debian's cross compiler has no riscv64
 * C library here): it drives the guest kernel's KVM through /dev/kvm. It makes a VM with one page
 * of RAM at guest physical 0x8000_0000 holding
 *
 *     li t0, 0x10000000 ; li t1, 0x42 ; sw t1, 0(t0) ; j .
 *
 * gives it a vCPU starting there, runs it, and checks that KVM_RUN comes back with KVM_EXIT_MMIO:
 * a 4-byte write of 0x42 to 0x1000_0000 (KVM decodes the store from htinst or by reading the
 * instruction with HLVX). It prints "KVM-MMIO-OK" and exits 0, or names the step that failed.
 *
 * The KVM structures and ioctl numbers are the generic ones of <linux/kvm.h>, written out here. */
#include <stddef.h>
#include <stdint.h>

#define SYS_IOCTL 29
#define SYS_OPENAT 56
#define SYS_WRITE 64
#define SYS_EXIT_GROUP 94
#define SYS_MMAP 222
#define AT_FDCWD (-100)
#define O_RDWR 2
#define O_CLOEXEC 02000000

#define KVM_GET_API_VERSION 0xae00
#define KVM_CREATE_VM 0xae01
#define KVM_GET_VCPU_MMAP_SIZE 0xae04
#define KVM_CREATE_VCPU 0xae41
#define KVM_RUN 0xae80
#define KVM_IOW(nr, size) ((1u << 30) | ((unsigned)(size) << 16) | (0xaeu << 8) | (nr))
#define KVM_SET_USER_MEMORY_REGION KVM_IOW(0x46, 32)
#define KVM_SET_ONE_REG KVM_IOW(0xac, 16)
#define KVM_EXIT_MMIO 6
/* KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CORE | the index of regs.pc */
#define KVM_REG_RISCV_PC 0x8030000002000000ull

struct kvm_userspace_memory_region {
  uint32_t slot, flags;
  uint64_t guest_phys_addr, memory_size, userspace_addr;
};
struct kvm_one_reg {
  uint64_t id, addr;
};
/* the start of struct kvm_run, up to the MMIO exit */
struct kvm_run_head {
  uint8_t request_interrupt_window, immediate_exit, padding1[6];
  uint32_t exit_reason;
  uint8_t ready_for_interrupt_injection, if_flag;
  uint16_t flags;
  uint64_t cr8, apic_base;
  struct {
    uint64_t phys_addr;
    uint8_t data[8];
    uint32_t len;
    uint8_t is_write;
  } mmio;
};

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
  register long a0 __asm__("a0") = a, a1 __asm__("a1") = b, a2 __asm__("a2") = c;
  register long a3 __asm__("a3") = d, a4 __asm__("a4") = e, a5 __asm__("a5") = f;
  register long a7 __asm__("a7") = n;
  __asm__ volatile("ecall"
                   : "+r"(a0)
                   : "r"(a1), "r"(a2), "r"(a3), "r"(a4), "r"(a5), "r"(a7)
                   : "memory");
  return a0;
}

static void put(const char *s) {
  size_t n = 0;
  while (s[n])
    n++;
  sys6(SYS_WRITE, 1, (long)s, (long)n, 0, 0, 0);
}

static void put_hex(uint64_t v) {
  char b[19];
  b[0] = '0';
  b[1] = 'x';
  for (int i = 0; i < 16; i++)
    b[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
  b[18] = 0;
  put(b);
}

static void fail(const char *what, long rc) __attribute__((noreturn));
static void fail(const char *what, long rc) {
  put("KVM-MMIO-FAIL ");
  put(what);
  put(" ");
  put_hex((uint64_t)rc);
  put("\n");
  sys6(SYS_EXIT_GROUP, 1, 0, 0, 0, 0, 0);
  __builtin_unreachable();
}

static long ioctl(long fd, unsigned long req, long arg) {
  return sys6(SYS_IOCTL, fd, (long)req, arg, 0, 0, 0);
}

static void *map(size_t len, long fd) {
  /* PROT_READ|PROT_WRITE; MAP_SHARED for the vCPU's run area, MAP_PRIVATE|MAP_ANONYMOUS else */
  long r = sys6(SYS_MMAP, 0, (long)len, 3, fd < 0 ? 0x22 : 0x01, fd, 0);
  if (r < 0 && r > -4096)
    fail("mmap", r);
  return (void *)r;
}

void _start(void) __attribute__((noreturn, section(".text.start")));
void _start(void) {
  long kvm = sys6(SYS_OPENAT, AT_FDCWD, (long)"/dev/kvm", O_RDWR | O_CLOEXEC, 0, 0, 0);
  if (kvm < 0)
    fail("open /dev/kvm", kvm);
  long v = ioctl(kvm, KVM_GET_API_VERSION, 0);
  if (v != 12)
    fail("KVM_GET_API_VERSION", v);
  long vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0)
    fail("KVM_CREATE_VM", vm);
  uint32_t *code = map(4096, -1);
  code[0] = 0x100002b7; /* lui t0, 0x10000 */
  code[1] = 0x04200313; /* li t1, 0x42 */
  code[2] = 0x0062a023; /* sw t1, 0(t0) */
  code[3] = 0x0000006f; /* j . */
  struct kvm_userspace_memory_region mem = {.slot = 0,
                                            .guest_phys_addr = 0x80000000,
                                            .memory_size = 4096,
                                            .userspace_addr = (uint64_t)code};
  long r = ioctl(vm, KVM_SET_USER_MEMORY_REGION, (long)&mem);
  if (r < 0)
    fail("KVM_SET_USER_MEMORY_REGION", r);
  long vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0)
    fail("KVM_CREATE_VCPU", vcpu);
  long size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size < (long)sizeof(struct kvm_run_head))
    fail("KVM_GET_VCPU_MMAP_SIZE", size);
  struct kvm_run_head *run = map((size_t)size, vcpu);
  uint64_t pc = 0x80000000;
  struct kvm_one_reg reg = {.id = KVM_REG_RISCV_PC, .addr = (uint64_t)&pc};
  r = ioctl(vcpu, KVM_SET_ONE_REG, (long)&reg);
  if (r < 0)
    fail("KVM_SET_ONE_REG pc", r);
  r = ioctl(vcpu, KVM_RUN, 0);
  if (r < 0)
    fail("KVM_RUN", r);
  if (run->exit_reason != KVM_EXIT_MMIO)
    fail("exit reason", run->exit_reason);
  uint32_t data = (uint32_t)run->mmio.data[0] | (uint32_t)run->mmio.data[1] << 8 |
                  (uint32_t)run->mmio.data[2] << 16 | (uint32_t)run->mmio.data[3] << 24;
  put("KVM_EXIT_MMIO phys_addr=");
  put_hex(run->mmio.phys_addr);
  put(" len=");
  put_hex(run->mmio.len);
  put(" is_write=");
  put_hex(run->mmio.is_write);
  put(" data=");
  put_hex(data);
  put("\n");
  if (run->mmio.phys_addr != 0x10000000 || run->mmio.len != 4 || !run->mmio.is_write ||
      data != 0x42)
    fail("MMIO exit values", 0);
  put("KVM-MMIO-OK\n");
  sys6(SYS_EXIT_GROUP, 0, 0, 0, 0, 0, 0);
  __builtin_unreachable();
}
