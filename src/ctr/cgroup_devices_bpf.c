/* cgroup2 device access control: an eBPF BPF_PROG_TYPE_CGROUP_DEVICE program built from the
 * spec's device rules (plus runc's default devices and linux.devices), emulating the v1
 * devices controller: an "a" rule resets the default, later rules take precedence. */
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/syscall.h>

#include "ctr/cgroup_internal.h"

typedef struct dev_rule {
  int type;             /* 0 = any, BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR */
  int access;           /* BPF_DEVCG_ACC_* bits */
  int64_t major, minor; /* -1 = any */
  bool allow;
} dev_rule;

typedef struct rule_list {
  dev_rule *r;
  size_t n;
  bool default_allow;
} rule_list;

static int access_bits(const char *s) {
  int a = 0;
  for (; s && *s; s++)
    a |= *s == 'r'   ? BPF_DEVCG_ACC_READ
         : *s == 'w' ? BPF_DEVCG_ACC_WRITE
         : *s == 'm' ? BPF_DEVCG_ACC_MKNOD
                     : 0;
  return a ? a : BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD;
}

static void add_rule(rule_list *l, char type, int64_t major, int64_t minor, int access,
                     bool allow) {
  bool all_access = access == (BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD);
  if (type == 'a' && major < 0 && minor < 0 && all_access) {
    /* "a *:* rwm" resets the whole list, as in the v1 controller */
    l->n = 0;
    l->default_allow = allow;
    return;
  }
  l->r = vs_realloc(l->r, (l->n + 1) * sizeof(*l->r));
  l->r[l->n++] = (dev_rule){.type = type == 'b'   ? BPF_DEVCG_DEV_BLOCK
                                    : type == 'c' ? BPF_DEVCG_DEV_CHAR
                                                  : 0,
                            .access = access,
                            .major = major,
                            .minor = minor,
                            .allow = allow};
}

static void add_json_rule(rule_list *l, json_t *rule) {
  const char *type = json_string_value(json_object_get(rule, "type"));
  json_t *maj = json_object_get(rule, "major"), *min = json_object_get(rule, "minor");
  add_rule(l, (char)(type ? type[0] : 'a'), json_is_integer(maj) ? json_integer_value(maj) : -1,
           json_is_integer(min) ? json_integer_value(min) : -1,
           access_bits(json_string_value(json_object_get(rule, "access"))),
           json_is_true(json_object_get(rule, "allow")));
}

/* ---------------------------------------------------------------- program */

typedef struct prog {
  struct bpf_insn *insn;
  size_t n;
} prog;

static void emit(prog *p, struct bpf_insn i) {
  p->insn = vs_realloc(p->insn, (p->n + 1) * sizeof(*p->insn));
  p->insn[p->n++] = i;
}

static struct bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  struct bpf_insn i;
  memset(&i, 0, sizeof(i));
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}

/* r2 = device type, r3 = requested access, r4 = major, r5 = minor (from bpf_cgroup_dev_ctx). */
static void emit_prologue(prog *p) {
  emit(p, insn(BPF_LDX | BPF_MEM | BPF_W, 2, 1, 0, 0));
  emit(p, insn(BPF_ALU | BPF_AND | BPF_K, 2, 0, 0, 0xffff));
  emit(p, insn(BPF_LDX | BPF_MEM | BPF_W, 3, 1, 0, 0));
  emit(p, insn(BPF_ALU | BPF_RSH | BPF_K, 3, 0, 0, 16));
  emit(p, insn(BPF_LDX | BPF_MEM | BPF_W, 4, 1, 4, 0));
  emit(p, insn(BPF_LDX | BPF_MEM | BPF_W, 5, 1, 8, 0));
}

/* One rule: every check jumps past the block when it does not match. */
static void emit_rule(prog *p, const dev_rule *r) {
  size_t start = p->n;
  size_t checks[8];
  size_t nchecks = 0;
  if (r->type) {
    checks[nchecks++] = p->n;
    emit(p, insn(BPF_JMP | BPF_JNE | BPF_K, 2, 0, 0, r->type));
  }
  if (r->access != (BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD)) {
    emit(p, insn(BPF_ALU64 | BPF_MOV | BPF_X, 1, 3, 0, 0));
    emit(p, insn(BPF_ALU | BPF_AND | BPF_K, 1, 0, 0, r->access));
    checks[nchecks++] = p->n;
    emit(p, insn(BPF_JMP | BPF_JNE | BPF_X, 1, 3, 0, 0));
  }
  if (r->major >= 0) {
    checks[nchecks++] = p->n;
    emit(p, insn(BPF_JMP | BPF_JNE | BPF_K, 4, 0, 0, (int32_t)r->major));
  }
  if (r->minor >= 0) {
    checks[nchecks++] = p->n;
    emit(p, insn(BPF_JMP | BPF_JNE | BPF_K, 5, 0, 0, (int32_t)r->minor));
  }
  emit(p, insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, r->allow ? 1 : 0));
  emit(p, insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
  for (size_t i = 0; i < nchecks; i++)
    p->insn[checks[i]].off = (int16_t)(p->n - checks[i] - 1);
  (void)start;
}

/* Later rules take precedence: test them first. */
static void build_program(const rule_list *l, prog *p) {
  emit_prologue(p);
  for (size_t i = l->n; i-- > 0;)
    emit_rule(p, &l->r[i]);
  emit(p, insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, l->default_allow ? 1 : 0));
  emit(p, insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
}

static long sys_bpf(int cmd, union bpf_attr *attr) {
  return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

/* The kernel writes the verifier log into `log`. */
static int load_program(const prog *p, char *log, // NOLINT(readability-non-const-parameter)
                        size_t log_size) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  attr.insns = (uint64_t)(uintptr_t)p->insn;
  attr.insn_cnt = (uint32_t)p->n;
  attr.license = (uint64_t)(uintptr_t) "Apache";
  if (log) {
    attr.log_buf = (uint64_t)(uintptr_t)log;
    attr.log_size = (uint32_t)log_size;
    attr.log_level = 1;
  }
  return (int)sys_bpf(BPF_PROG_LOAD, &attr);
}

/* runc's default device rules (also written to the v1 controller in cgroup.c). */
static const struct {
  char type;
  int64_t major, minor;
} default_devices[] = {{'c', 1, 3}, {'c', 1, 8}, {'c', 1, 7},    {'c', 5, 0}, {'c', 1, 5},
                       {'c', 1, 9}, {'c', 5, 1}, {'c', 136, -1}, {'c', 5, 2}, {'c', 10, 200}};

int cg_v2_devices_attach(cg_dir *d, json_t *rules, json_t *linux_devices, int *prog_fd,
                         vs_error **err) {
  rule_list l = {.default_allow = true};
  size_t i;
  json_t *e;
  json_array_foreach(rules, i, e) add_json_rule(&l, e);
  add_rule(&l, 'c', -1, -1, BPF_DEVCG_ACC_MKNOD, true);
  add_rule(&l, 'b', -1, -1, BPF_DEVCG_ACC_MKNOD, true);
  for (i = 0; i < ARRAY_SIZE(default_devices); i++)
    add_rule(&l, default_devices[i].type, default_devices[i].major, default_devices[i].minor,
             BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD, true);
  json_array_foreach(linux_devices, i, e) {
    const char *type = json_string_value(json_object_get(e, "type"));
    json_t *maj = json_object_get(e, "major"), *min = json_object_get(e, "minor");
    if (!type || !json_is_integer(maj) || !json_is_integer(min) ||
        (type[0] != 'c' && type[0] != 'u' && type[0] != 'b'))
      continue;
    add_rule(&l, type[0] == 'b' ? 'b' : 'c', json_integer_value(maj), json_integer_value(min),
             BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD, true);
  }
  prog p = {0};
  build_program(&l, &p);
  free(l.r);

  union bpf_attr attr;
  int fd = load_program(&p, NULL, 0);
  if (fd < 0) {
    /* Load again with the verifier's log, for the message. */
    char log[1024] = "";
    int saved = errno;
    int again = load_program(&p, log, sizeof(log));
    if (again >= 0)
      close(again);
    free(p.insn);
    return vs_error_set(err, saved, "load the device filter (eBPF)%s%.300s", log[0] ? ": " : "",
                        log);
  }
  free(p.insn);
  _cleanup_close_ int cgfd = open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgfd < 0) {
    close(fd);
    return vs_error_set(err, errno, "open %s", d->path);
  }
  memset(&attr, 0, sizeof(attr));
  attr.target_fd = (uint32_t)cgfd;
  attr.attach_bpf_fd = (uint32_t)fd;
  attr.attach_type = BPF_CGROUP_DEVICE;
  attr.attach_flags = BPF_F_ALLOW_MULTI;
  if (sys_bpf(BPF_PROG_ATTACH, &attr) < 0) {
    int saved = errno;
    close(fd);
    return vs_error_set(err, saved, "attach the device filter to %s", d->path);
  }
  /* The new program is in place: now the old one (narrower) can go. */
  if (*prog_fd >= 0) {
    memset(&attr, 0, sizeof(attr));
    attr.target_fd = (uint32_t)cgfd;
    attr.attach_bpf_fd = (uint32_t)*prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    if (sys_bpf(BPF_PROG_DETACH, &attr) < 0)
      vs_log_debug("detach the previous device filter of %s: %s", d->path, strerror(errno));
    close(*prog_fd);
  }
  *prog_fd = fd;
  return 0;
}
