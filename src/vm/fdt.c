/* The device tree handed to firmware and kernel, built with libfdt. It describes exactly the
 * machine assembled in machine.c: harts (with the ISA the cpu implements), memory, CLINT, PLIC,
 * UART, RTC, the syscon power controls, virtio-mmio slots in use, and /chosen.
 */
#include <errno.h>
#include <libfdt.h>
#include <string.h>

#include "vm/machine.h"

#define FDT_CHECK(expr, what)                                                                      \
  do {                                                                                             \
    int _r = (expr);                                                                               \
    if (_r < 0)                                                                                    \
      return vs_error_set(err, 0, "device tree: %s: %s", what, fdt_strerror(_r));                  \
  } while (0)

/* phandles: 1 = PLIC, 2 = syscon, 0x10 + h = hart h's interrupt controller */
enum { PHANDLE_PLIC = 1, PHANDLE_SYSCON = 2, PHANDLE_CPU_INTC = 0x10 };

/* "reg" with #address-cells = #size-cells = 2 */
static int fdt_set_reg(void *fdt, int node, uint64_t base, uint64_t size) {
  fdt64_t cells[2] = {cpu_to_fdt64(base), cpu_to_fdt64(size)};
  return fdt_setprop(fdt, node, "reg", cells, sizeof(cells));
}

static int fdt_add_node(void *fdt, int parent, const char *name, vs_error **err) {
  int node = fdt_add_subnode(fdt, parent, name);
  if (node < 0)
    return vs_error_set(err, 0, "device tree: add node %s: %s", name, fdt_strerror(node));
  return node;
}

/* Property value of several NUL-separated strings, e.g. compatible lists. */
static int fdt_set_strings(void *fdt, int node, const char *name, const char *const *list,
                           size_t n) {
  char buf[512];
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    size_t l = strlen(list[i]) + 1;
    if (len + l > sizeof(buf))
      return -FDT_ERR_NOSPACE;
    memcpy(buf + len, list[i], l);
    len += l;
  }
  return fdt_setprop(fdt, node, name, buf, (int)len);
}

/* Interrupt wiring of a per-hart device: for each hart, <&intc(h) irq_a [&intc(h) irq_b]>. */
static int fdt_set_hart_interrupts(void *fdt, int node, unsigned nharts, uint32_t irq_a,
                                   uint32_t irq_b) {
  fdt32_t cells[VM_MAX_SMP * 4];
  unsigned n = 0;
  for (unsigned h = 0; h < nharts; h++) {
    cells[n++] = cpu_to_fdt32(PHANDLE_CPU_INTC + h);
    cells[n++] = cpu_to_fdt32(irq_a);
    cells[n++] = cpu_to_fdt32(PHANDLE_CPU_INTC + h);
    cells[n++] = cpu_to_fdt32(irq_b);
  }
  return fdt_setprop(fdt, node, "interrupts-extended", cells, (int)(n * sizeof(fdt32_t)));
}

/* The extension list of RV_ISA_STRING ("rv64imafdc_zicsr_...") as riscv,isa-extensions. */
static int fdt_set_isa_extensions(void *fdt, int node, const char *isa) {
  char buf[512];
  size_t len = 0;
  const char *p = isa + 4; /* skip "rv64" */
  while (*p && *p != '_') {
    if (len + 2 > sizeof(buf))
      return -FDT_ERR_NOSPACE;
    buf[len++] = *p++;
    buf[len++] = '\0';
  }
  while (*p == '_') {
    p++;
    size_t l = strcspn(p, "_");
    if (len + l + 1 > sizeof(buf))
      return -FDT_ERR_NOSPACE;
    memcpy(buf + len, p, l);
    len += l;
    buf[len++] = '\0';
    p += l;
  }
  return fdt_setprop(fdt, node, "riscv,isa-extensions", buf, (int)len);
}

static int fdt_add_cpus(vm *m, void *fdt, vs_error **err) {
  const char *isa = rv_isa_string(&m->bus);
  int cpus = fdt_add_node(fdt, 0, "cpus", err);
  if (cpus < 0)
    return -1;
  FDT_CHECK(fdt_setprop_cell(fdt, cpus, "#address-cells", 1), "cpus");
  FDT_CHECK(fdt_setprop_cell(fdt, cpus, "#size-cells", 0), "cpus");
  FDT_CHECK(fdt_setprop_cell(fdt, cpus, "timebase-frequency", VM_TIMEBASE_HZ), "cpus");

  int map = fdt_add_node(fdt, cpus, "cpu-map", err);
  if (map < 0)
    return -1;
  int cluster = fdt_add_node(fdt, map, "cluster0", err);
  if (cluster < 0)
    return -1;
  /* libfdt inserts new subnodes first: add in reverse so cpu@0 comes first */
  for (int h = (int)m->nharts - 1; h >= 0; h--) {
    char name[32];
    snprintf(name, sizeof(name), "core%d", h);
    int core = fdt_add_node(fdt, cluster, name, err);
    if (core < 0)
      return -1;
    FDT_CHECK(fdt_setprop_cell(fdt, core, "cpu", PHANDLE_CPU_INTC + 0x100 + (unsigned)h), "core");
  }
  for (int h = (int)m->nharts - 1; h >= 0; h--) {
    char name[32];
    snprintf(name, sizeof(name), "cpu@%d", h);
    int cpu = fdt_add_node(fdt, cpus, name, err);
    if (cpu < 0)
      return -1;
    FDT_CHECK(fdt_setprop_string(fdt, cpu, "device_type", "cpu"), "cpu");
    FDT_CHECK(fdt_setprop_cell(fdt, cpu, "reg", (uint32_t)h), "cpu");
    FDT_CHECK(fdt_setprop_string(fdt, cpu, "status", "okay"), "cpu");
    FDT_CHECK(fdt_setprop_string(fdt, cpu, "compatible", "riscv"), "cpu");
    FDT_CHECK(fdt_setprop_string(fdt, cpu, "riscv,isa", isa), "cpu");
    FDT_CHECK(fdt_setprop_string(fdt, cpu, "riscv,isa-base", "rv64i"), "cpu");
    FDT_CHECK(fdt_set_isa_extensions(fdt, cpu, isa), "cpu isa extensions");
    FDT_CHECK(fdt_setprop_string(fdt, cpu, "mmu-type", VM_MMU_TYPE), "cpu");
    FDT_CHECK(fdt_setprop_cell(fdt, cpu, "phandle", PHANDLE_CPU_INTC + 0x100 + (unsigned)h), "cpu");
    int intc = fdt_add_node(fdt, cpu, "interrupt-controller", err);
    if (intc < 0)
      return -1;
    FDT_CHECK(fdt_setprop_cell(fdt, intc, "#interrupt-cells", 1), "intc");
    FDT_CHECK(fdt_setprop_empty(fdt, intc, "interrupt-controller"), "intc");
    FDT_CHECK(fdt_setprop_string(fdt, intc, "compatible", "riscv,cpu-intc"), "intc");
    FDT_CHECK(fdt_setprop_cell(fdt, intc, "phandle", PHANDLE_CPU_INTC + (unsigned)h), "intc");
  }
  return 0;
}

static int fdt_add_soc(vm *m, void *fdt, vs_error **err) {
  int soc = fdt_add_node(fdt, 0, "soc", err);
  if (soc < 0)
    return -1;
  FDT_CHECK(fdt_setprop_cell(fdt, soc, "#address-cells", 2), "soc");
  FDT_CHECK(fdt_setprop_cell(fdt, soc, "#size-cells", 2), "soc");
  FDT_CHECK(fdt_setprop_string(fdt, soc, "compatible", "simple-bus"), "soc");
  FDT_CHECK(fdt_setprop_empty(fdt, soc, "ranges"), "soc");

  for (int i = (int)m->num_virtio - 1; i >= 0; i--)
    if (vm_fdt_add_virtio_mmio(fdt, m->virtio[i].base, m->virtio[i].irq, err) < 0)
      return -1;

  char name[64];
  snprintf(name, sizeof(name), "rtc@%llx", (unsigned long long)VM_RTC_BASE);
  int rtc = fdt_add_node(fdt, soc, name, err);
  if (rtc < 0)
    return -1;
  FDT_CHECK(fdt_setprop_string(fdt, rtc, "compatible", "google,goldfish-rtc"), "rtc");
  FDT_CHECK(fdt_set_reg(fdt, rtc, VM_RTC_BASE, RTC_SIZE), "rtc");
  FDT_CHECK(fdt_setprop_cell(fdt, rtc, "interrupt-parent", PHANDLE_PLIC), "rtc");
  FDT_CHECK(fdt_setprop_cell(fdt, rtc, "interrupts", VM_RTC_IRQ), "rtc");

  snprintf(name, sizeof(name), "serial@%llx", (unsigned long long)VM_UART_BASE);
  int uart = fdt_add_node(fdt, soc, name, err);
  if (uart < 0)
    return -1;
  FDT_CHECK(fdt_setprop_string(fdt, uart, "compatible", "ns16550a"), "uart");
  FDT_CHECK(fdt_set_reg(fdt, uart, VM_UART_BASE, VM_UART_SIZE), "uart");
  FDT_CHECK(fdt_setprop_cell(fdt, uart, "clock-frequency", VM_UART_CLOCK_HZ), "uart");
  FDT_CHECK(fdt_setprop_cell(fdt, uart, "interrupt-parent", PHANDLE_PLIC), "uart");
  FDT_CHECK(fdt_setprop_cell(fdt, uart, "interrupts", VM_UART_IRQ), "uart");

  snprintf(name, sizeof(name), "test@%llx", (unsigned long long)VM_SYSCON_BASE);
  int syscon = fdt_add_node(fdt, soc, name, err);
  if (syscon < 0)
    return -1;
  static const char *const syscon_compat[] = {"sifive,test1", "sifive,test0", "syscon"};
  FDT_CHECK(fdt_set_strings(fdt, syscon, "compatible", syscon_compat, 3), "syscon");
  FDT_CHECK(fdt_set_reg(fdt, syscon, VM_SYSCON_BASE, SYSCON_SIZE), "syscon");
  FDT_CHECK(fdt_setprop_cell(fdt, syscon, "phandle", PHANDLE_SYSCON), "syscon");

  snprintf(name, sizeof(name), "plic@%llx", (unsigned long long)VM_PLIC_BASE);
  int plic = fdt_add_node(fdt, soc, name, err);
  if (plic < 0)
    return -1;
  static const char *const plic_compat[] = {"sifive,plic-1.0.0", "riscv,plic0"};
  FDT_CHECK(fdt_set_strings(fdt, plic, "compatible", plic_compat, 2), "plic");
  FDT_CHECK(fdt_set_reg(fdt, plic, VM_PLIC_BASE, PLIC_DT_SIZE), "plic");
  FDT_CHECK(fdt_setprop_cell(fdt, plic, "#address-cells", 0), "plic");
  FDT_CHECK(fdt_setprop_cell(fdt, plic, "#interrupt-cells", 1), "plic");
  FDT_CHECK(fdt_setprop_empty(fdt, plic, "interrupt-controller"), "plic");
  FDT_CHECK(fdt_setprop_cell(fdt, plic, "riscv,ndev", PLIC_NUM_SOURCES - 1), "plic");
  FDT_CHECK(fdt_setprop_cell(fdt, plic, "phandle", PHANDLE_PLIC), "plic");
  /* contexts 2h (M-mode external, irq 11) and 2h+1 (S-mode external, irq 9) */
  FDT_CHECK(fdt_set_hart_interrupts(fdt, plic, m->nharts, 11, 9), "plic");

  snprintf(name, sizeof(name), "clint@%llx", (unsigned long long)VM_ACLINT_BASE);
  int clint = fdt_add_node(fdt, soc, name, err);
  if (clint < 0)
    return -1;
  static const char *const clint_compat[] = {"sifive,clint0", "riscv,clint0"};
  FDT_CHECK(fdt_set_strings(fdt, clint, "compatible", clint_compat, 2), "clint");
  FDT_CHECK(fdt_set_reg(fdt, clint, VM_ACLINT_BASE, ACLINT_SIZE), "clint");
  /* M-mode software (3) and timer (7) interrupts of every hart */
  FDT_CHECK(fdt_set_hart_interrupts(fdt, clint, m->nharts, 3, 7), "clint");
  return 0;
}

int vm_fdt_add_virtio_mmio(void *fdt, uint64_t base, unsigned irq, vs_error **err) {
  int soc = fdt_path_offset(fdt, "/soc");
  if (soc < 0)
    return vs_error_set(err, 0, "device tree: no /soc node: %s", fdt_strerror(soc));
  char name[64];
  snprintf(name, sizeof(name), "virtio_mmio@%llx", (unsigned long long)base);
  int node = fdt_add_node(fdt, soc, name, err);
  if (node < 0)
    return -1;
  FDT_CHECK(fdt_setprop_string(fdt, node, "compatible", "virtio,mmio"), "virtio");
  FDT_CHECK(fdt_set_reg(fdt, node, base, VM_VIRTIO_SIZE), "virtio");
  FDT_CHECK(fdt_setprop_cell(fdt, node, "interrupt-parent", PHANDLE_PLIC), "virtio");
  FDT_CHECK(fdt_setprop_cell(fdt, node, "interrupts", irq), "virtio");
  return 0;
}

static int fdt_add_power_controls(void *fdt, vs_error **err) {
  int reboot = fdt_add_node(fdt, 0, "reboot", err);
  if (reboot < 0)
    return -1;
  FDT_CHECK(fdt_setprop_string(fdt, reboot, "compatible", "syscon-reboot"), "reboot");
  FDT_CHECK(fdt_setprop_cell(fdt, reboot, "regmap", PHANDLE_SYSCON), "reboot");
  FDT_CHECK(fdt_setprop_cell(fdt, reboot, "offset", 0), "reboot");
  FDT_CHECK(fdt_setprop_cell(fdt, reboot, "value", SYSCON_RESET), "reboot");
  int poweroff = fdt_add_node(fdt, 0, "poweroff", err);
  if (poweroff < 0)
    return -1;
  FDT_CHECK(fdt_setprop_string(fdt, poweroff, "compatible", "syscon-poweroff"), "poweroff");
  FDT_CHECK(fdt_setprop_cell(fdt, poweroff, "regmap", PHANDLE_SYSCON), "poweroff");
  FDT_CHECK(fdt_setprop_cell(fdt, poweroff, "offset", 0), "poweroff");
  FDT_CHECK(fdt_setprop_cell(fdt, poweroff, "value", SYSCON_POWEROFF), "poweroff");
  return 0;
}

static int fdt_add_chosen(vm *m, void *fdt, vs_error **err) {
  int chosen = fdt_add_node(fdt, 0, "chosen", err);
  if (chosen < 0)
    return -1;
  char path[64];
  snprintf(path, sizeof(path), "/soc/serial@%llx", (unsigned long long)VM_UART_BASE);
  FDT_CHECK(fdt_setprop_string(fdt, chosen, "stdout-path", path), "chosen");
  if (m->bootargs)
    FDT_CHECK(fdt_setprop_string(fdt, chosen, "bootargs", m->bootargs), "bootargs");
  if (m->initrd_end > m->initrd_start) {
    FDT_CHECK(fdt_setprop_u64(fdt, chosen, "linux,initrd-start", m->initrd_start), "initrd");
    FDT_CHECK(fdt_setprop_u64(fdt, chosen, "linux,initrd-end", m->initrd_end), "initrd");
  }
  int aliases = fdt_add_node(fdt, 0, "aliases", err);
  if (aliases < 0)
    return -1;
  FDT_CHECK(fdt_setprop_string(fdt, aliases, "serial0", path), "aliases");
  return 0;
}

int vm_fdt_build(vm *m, void *buf, size_t bufsize, vs_error **err) {
  FDT_CHECK(fdt_create_empty_tree(buf, (int)bufsize), "create");
  FDT_CHECK(fdt_setprop_cell(buf, 0, "#address-cells", 2), "root");
  FDT_CHECK(fdt_setprop_cell(buf, 0, "#size-cells", 2), "root");
  static const char *const compat[] = {"vessel,virt", "riscv-virtio"};
  FDT_CHECK(fdt_set_strings(buf, 0, "compatible", compat, 2), "root");
  FDT_CHECK(fdt_setprop_string(buf, 0, "model", "vessel virt"), "root");

  /* added in reverse of the order they appear in (libfdt inserts new subnodes first) */
  if (fdt_add_power_controls(buf, err) < 0 || fdt_add_soc(m, buf, err) < 0)
    return -1;
  char name[64];
  snprintf(name, sizeof(name), "memory@%llx", (unsigned long long)VM_RAM_BASE);
  int mem = fdt_add_node(buf, 0, name, err);
  if (mem < 0)
    return -1;
  FDT_CHECK(fdt_setprop_string(buf, mem, "device_type", "memory"), "memory");
  FDT_CHECK(fdt_set_reg(buf, mem, VM_RAM_BASE, m->ram_size), "memory");
  if (fdt_add_cpus(m, buf, err) < 0 || fdt_add_chosen(m, buf, err) < 0)
    return -1;
  FDT_CHECK(fdt_pack(buf), "pack");
  return 0;
}
