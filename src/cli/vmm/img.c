/* `vessel-vmm img`: disk image tool.
 *
 *   img create [-f raw|qcow2] [-b BACKING [-F raw|qcow2]] [-o OPT,...] FILE [SIZE]
 *   img info [-f FMT] [--output=json] FILE
 *   img convert [-f FMT] SRC DST                    a standalone qcow2 of SRC's whole chain
 * Debugging and test helpers (they drive the same code the VM uses):
 *   img read [-f FMT] [-t CACHE] FILE OUT          the whole virtual disk as raw bytes into OUT
 * ("-": stdout) img io [-f FMT] [--data DATA] FILE  requests from stdin, one per line: write OFFSET
 * LENGTH DATA_OFFSET   LENGTH bytes taken from DATA at DATA_OFFSET zero OFFSET LENGTH | discard
 * OFFSET LENGTH | flush crash                             end the process at once, without flush or
 * close
 */
#include "cli/vmm/img.h"
#include "vm/disk/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char img_usage[] =
    "usage: vessel-vmm img COMMAND [OPTIONS]\n"
    "\n"
    "  create [-f raw|qcow2] [-b BACKING [-F raw|qcow2]] [-o OPTIONS] FILE [SIZE]\n"
    "      Create an image (default qcow2). SIZE takes K, M, G, T suffixes (powers of 1024);\n"
    "      with -b it defaults to the backing file's size. A relative BACKING is relative to\n"
    "      FILE's directory. OPTIONS (qcow2): cluster_size=N, compat=0.10|1.1, refcount_bits=N.\n"
    "  info [-f FMT] [--output=human|json] FILE\n"
    "      Show format, virtual size, file size, cluster size, backing file.\n"
    "  convert [-f FMT] SRC DST\n"
    "      Write SRC's virtual disk (through its backing chain) into a new standalone qcow2\n"
    "      DST: clusters that read as zeros are left unallocated. DST must not exist.\n"
    "\n"
    "  Debugging helpers (used by the tests):\n"
    "  read [-f FMT] [-t none|writeback] FILE OUT\n"
    "      Write the whole virtual disk as raw bytes to OUT ('-' for stdout).\n"
    "  io [-f FMT] [-t none|writeback] [--data DATAFILE] FILE\n"
    "      Apply requests read from stdin, one per line: 'write OFF LEN DATAOFF' (bytes from\n"
    "      DATAFILE), 'zero OFF LEN', 'discard OFF LEN', 'flush', 'crash' (exit at once\n"
    "      without flushing or closing: what a killed VMM leaves behind).\n";

static void print_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void print_usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "vessel-vmm img: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\nTry 'vessel-vmm img --help'.\n");
  va_end(ap);
}
/* A macro so that the exit status 2 is visible at the call site (static analysers do not follow
 * variadic calls, and then assume a usage error may return 0). */
#define usage_error(...)                                                                           \
  ({                                                                                               \
    print_usage_error(__VA_ARGS__);                                                                \
    2;                                                                                             \
  })

static int fail(vs_error *err) {
  vs_error_print(err, "vessel-vmm img");
  vs_error_free(err);
  return 1;
}

/* "10G", "512", "1.5M" is not accepted: integers with an optional binary suffix. */
static int parse_size(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || s[0] == '-')
    return -1;
  unsigned shift = 0;
  switch (*end) {
  case 0:
  case 'b':
  case 'B':
    break;
  case 'k':
  case 'K':
    shift = 10;
    break;
  case 'M':
    shift = 20;
    break;
  case 'G':
    shift = 30;
    break;
  case 'T':
    shift = 40;
    break;
  case 'P':
    shift = 50;
    break;
  default:
    return -1;
  }
  if (*end && end[1] && strcmp(end + 1, "iB") != 0 && strcmp(end + 1, "B") != 0)
    return -1;
  if (shift && v > (UINT64_MAX >> shift))
    return -1;
  *out = (uint64_t)v << shift;
  return 0;
}

static int parse_format_arg(const char *s, vm_disk_format *f) {
  if (vm_disk_format_parse(s, f) < 0)
    return usage_error("unknown image format '%s' (raw or qcow2)", s);
  return 0;
}

static int parse_create_options(char *opts, vm_disk_create_opts *co) {
  for (char *save = NULL, *kv = strtok_r(opts, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
    char *val = strchr(kv, '=');
    if (!val)
      return usage_error("option '%s' needs a value", kv);
    *val++ = 0;
    uint64_t n;
    if (strcmp(kv, "cluster_size") == 0 && parse_size(val, &n) == 0 && n <= UINT32_MAX)
      co->cluster_size = (uint32_t)n;
    else if (strcmp(kv, "compat") == 0 && (strcmp(val, "0.10") == 0 || strcmp(val, "v2") == 0))
      co->qcow2_version = 2;
    else if (strcmp(kv, "compat") == 0 && (strcmp(val, "1.1") == 0 || strcmp(val, "v3") == 0))
      co->qcow2_version = 3;
    else if (strcmp(kv, "refcount_bits") == 0 && parse_size(val, &n) == 0 && n <= 64)
      co->refcount_bits = (unsigned)n;
    else
      return usage_error("unknown or bad option '%s=%s'", kv, val);
  }
  return 0;
}

static int cmd_create(int argc, char **argv) {
  vm_disk_create_opts co = {.format = VM_DISK_FORMAT_QCOW2};
  int c;
  while ((c = getopt(argc, argv, "+f:b:F:o:h")) != -1) {
    switch (c) {
    case 'f':
      if (parse_format_arg(optarg, &co.format))
        return 2;
      break;
    case 'b':
      co.backing_file = optarg;
      break;
    case 'F':
      if (parse_format_arg(optarg, &co.backing_format))
        return 2;
      break;
    case 'o':
      if (parse_create_options(optarg, &co))
        return 2;
      break;
    case 'h':
      fputs(img_usage, stdout);
      return 0;
    default:
      return usage_error("create: bad option");
    }
  }
  if (optind >= argc)
    return usage_error("create: no FILE given");
  const char *file = argv[optind++];
  if (optind < argc) {
    if (parse_size(argv[optind], &co.size) < 0)
      return usage_error("create: bad size '%s'", argv[optind]);
    optind++;
  } else if (!co.backing_file) {
    return usage_error("create: no SIZE given");
  }
  if (optind < argc)
    return usage_error("create: unexpected argument '%s'", argv[optind]);
  if (co.backing_file && co.format != VM_DISK_FORMAT_QCOW2)
    return usage_error("create: a backing file needs -f qcow2");
  vs_error *err = NULL;
  if (vm_disk_create(file, &co, &err) < 0)
    return fail(err);
  return 0;
}

static int open_for_cmd(int argc, char **argv, bool readonly, const char *cmd, int nargs,
                        const char **data_path, vm_disk **out, char ***rest) {
  vm_disk_opts o = {.readonly = readonly};
  static const struct option longopts[] = {
      {"data", required_argument, NULL, 'd'}, {"output", required_argument, NULL, 'O'}, {0}};
  int c;
  while ((c = getopt_long(argc, argv, "+f:t:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'f':
      if (parse_format_arg(optarg, &o.format))
        return 2;
      break;
    case 't':
      if (strcmp(optarg, "none") == 0)
        o.cache = VM_DISK_CACHE_NONE;
      else if (strcmp(optarg, "writeback") == 0)
        o.cache = VM_DISK_CACHE_WRITEBACK;
      else
        return usage_error("%s: -t takes none or writeback", cmd);
      break;
    case 'd':
      if (strcmp(cmd, "io") != 0)
        return usage_error("%s: --data is only for 'io'", cmd);
      *data_path = optarg;
      break;
    case 'O':
      if (strcmp(cmd, "info") != 0 || (strcmp(optarg, "json") != 0 && strcmp(optarg, "human") != 0))
        return usage_error("%s: bad --output", cmd);
      *data_path = strcmp(optarg, "json") == 0 ? "json" : NULL;
      break;
    case 'h':
      fputs(img_usage, stdout);
      return -1;
    default:
      return usage_error("%s: bad option", cmd);
    }
  }
  if (argc - optind != nargs)
    return usage_error("%s: expected %d argument%s", cmd, nargs, nargs == 1 ? "" : "s");
  *rest = argv + optind + 1;
  vs_error *err = NULL;
  if (vm_disk_open(argv[optind], &o, out, &err) < 0)
    return fail(err);
  return 0;
}

static void print_size(const char *label, uint64_t v) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double x = (double)v;
  size_t u = 0;
  while (x >= 1024 && u + 1 < ARRAY_SIZE(units)) {
    x /= 1024;
    u++;
  }
  printf("%-16s %.3g %s (%" PRIu64 " bytes)\n", label, x, units[u], v);
}

static int cmd_info(int argc, char **argv) {
  vm_disk *d = NULL;
  char **rest = NULL;
  const char *output = NULL;
  int r = open_for_cmd(argc, argv, true, "info", 1, &output, &d, &rest);
  if (r)
    return r < 0 ? 0 : r;
  vm_disk_info i;
  vm_disk_get_info(d, &i);
  if (output) {
    json_t *o = json_pack("{s:s, s:I, s:I}", "format", i.format, "virtual-size",
                          (json_int_t)i.virtual_size, "actual-size", (json_int_t)i.file_size);
    if (i.cluster_size) {
      json_object_set_new(o, "cluster-size", json_integer((json_int_t)i.cluster_size));
      json_object_set_new(o, "version", json_integer(i.qcow2_version));
      json_object_set_new(o, "refcount-bits", json_integer(i.refcount_bits));
      json_object_set_new(o, "compression-type", json_string(i.compression));
      json_object_set_new(o, "dirty", json_boolean(i.dirty));
      json_object_set_new(o, "corrupt", json_boolean(i.corrupt));
      json_object_set_new(o, "lazy-refcounts", json_boolean(i.lazy_refcounts));
    }
    if (i.backing_file) {
      json_object_set_new(o, "backing-filename", json_string(i.backing_file));
      if (i.backing_format)
        json_object_set_new(o, "backing-filename-format", json_string(i.backing_format));
      json_object_set_new(o, "backing-chain-depth", json_integer(i.backing_depth));
    }
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    printf("%s\n", s);
    free(s);
    json_decref(o);
  } else {
    printf("%-16s %s\n", "format:", i.format);
    print_size("virtual size:", i.virtual_size);
    print_size("file size:", i.file_size);
    if (i.cluster_size) {
      printf("%-16s %" PRIu64 "\n", "cluster size:", i.cluster_size);
      printf("%-16s %u (compat %s)\n", "version:", i.qcow2_version,
             i.qcow2_version == 2 ? "0.10" : "1.1");
      printf("%-16s %u\n", "refcount bits:", i.refcount_bits);
      printf("%-16s %s\n", "compression:", i.compression);
      if (i.dirty || i.corrupt)
        printf("%-16s%s%s\n", "flags:", i.dirty ? " dirty" : "", i.corrupt ? " corrupt" : "");
    }
    if (i.backing_file) {
      printf("%-16s %s\n", "backing file:", i.backing_file);
      if (i.backing_format)
        printf("%-16s %s\n", "backing format:", i.backing_format);
      printf("%-16s %d\n", "chain depth:", i.backing_depth);
    }
  }
  vs_error *err = NULL;
  if (vm_disk_close(d, &err) < 0)
    return fail(err);
  return 0;
}

static int cmd_read(int argc, char **argv) {
  vm_disk *d = NULL;
  char **rest = NULL;
  int r = open_for_cmd(argc, argv, true, "read", 2, NULL, &d, &rest);
  if (r)
    return r < 0 ? 0 : r;
  const char *out = rest[0];
  int fd = strcmp(out, "-") == 0 ? STDOUT_FILENO
                                 : open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  vs_error *err = NULL;
  if (fd < 0) {
    vs_error_set(&err, errno, "create %s", out);
    vm_disk_close(d, NULL);
    return fail(err);
  }
  const size_t chunk = 1 << 20;
  _cleanup_free_ uint8_t *buf = vs_malloc0(chunk);
  uint64_t size = vm_disk_size(d);
  int status = 0;
  for (uint64_t off = 0; off < size && status == 0; off += chunk) {
    size_t n = size - off < chunk ? (size_t)(size - off) : chunk;
    if (vm_disk_read(d, buf, off, n, &err) < 0) {
      status = fail(err);
      break;
    }
    for (size_t done = 0; done < n;) {
      ssize_t w = write(fd, buf + done, n - done);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0) {
        vs_error_set(&err, errno, "write %s", out);
        status = fail(err);
        break;
      }
      done += (size_t)w;
    }
  }
  if (fd != STDOUT_FILENO && close(fd) < 0 && status == 0) {
    vs_error_set(&err, errno, "close %s", out);
    status = fail(err);
  }
  vm_disk_close(d, NULL);
  return status;
}

static bool all_zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return false;
  return true;
}

/* SRC's virtual disk, backing files included, copied cluster by cluster into DST; clusters of
 * zeros are not written, so DST stays as sparse as the chain. */
static int convert_into(vm_disk *src, const char *dst, vs_error **err) {
  const uint32_t cluster = 65536;
  vm_disk_create_opts co = {
      .format = VM_DISK_FORMAT_QCOW2, .size = vm_disk_size(src), .cluster_size = cluster};
  if (vm_disk_create(dst, &co, err) < 0)
    return -1;
  vm_disk_opts o = {.format = VM_DISK_FORMAT_QCOW2};
  vm_disk *out = NULL;
  if (vm_disk_open(dst, &o, &out, err) < 0) {
    unlink(dst);
    return -1;
  }
  const size_t chunk = 1 << 20;
  _cleanup_free_ uint8_t *buf = vs_malloc0(chunk);
  uint64_t size = vm_disk_size(src);
  int r = 0;
  for (uint64_t off = 0; off < size && r == 0; off += chunk) {
    size_t n = size - off < chunk ? (size_t)(size - off) : chunk;
    if (vm_disk_read(src, buf, off, n, err) < 0) {
      r = -1;
      break;
    }
    for (size_t k = 0; k < n && r == 0; k += cluster) {
      size_t len = n - k < cluster ? n - k : cluster;
      if (!all_zero(buf + k, len))
        r = vm_disk_write(out, buf + k, off + k, len, err);
    }
  }
  if (vm_disk_close(out, r == 0 ? err : NULL) < 0)
    r = -1;
  if (r < 0)
    unlink(dst); /* made here: a half copy is no image */
  return r;
}

static int cmd_convert(int argc, char **argv) {
  vm_disk *d = NULL;
  char **rest = NULL;
  int r = open_for_cmd(argc, argv, true, "convert", 2, NULL, &d, &rest);
  if (r)
    return r < 0 ? 0 : r;
  vs_error *err = NULL;
  if (convert_into(d, rest[0], &err) < 0) {
    vm_disk_close(d, NULL);
    return fail(err);
  }
  vm_disk_close(d, NULL);
  return 0;
}

static int run_io_line(vm_disk *d, int data_fd, const char *line, vs_error **err) {
  char op[16];
  uint64_t a = 0, b = 0, c = 0;
  /* The io script is a debugging format written by the tests; a malformed number only makes the
   * request fail its range check, so sscanf's silent conversion is acceptable here. */
  int n = sscanf(line, "%15s %" SCNu64 " %" SCNu64 " %" SCNu64, op, &a, &b, // NOLINT(cert-err34-c)
                 &c);
  if (n < 1)
    return 0;
  if (strcmp(op, "write") == 0 && n == 4) {
    if (data_fd < 0)
      return vs_error_set(err, EINVAL, "write needs --data");
    if (b > (256u << 20))
      return vs_error_set(err, EINVAL, "write of %" PRIu64 " bytes is too large", b);
    _cleanup_free_ uint8_t *buf = vs_malloc0(b ? b : 1);
    if (pread(data_fd, buf, b, (off_t)c) != (ssize_t)b)
      return vs_error_set(err, errno ? errno : EIO, "read %" PRIu64 " bytes of data at %" PRIu64, b,
                          c);
    return vm_disk_write(d, buf, a, b, err);
  }
  if (strcmp(op, "zero") == 0 && n == 3)
    return vm_disk_write_zeroes(d, a, b, err);
  if (strcmp(op, "discard") == 0 && n == 3)
    return vm_disk_discard(d, a, b, err);
  if (strcmp(op, "flush") == 0 && n == 1)
    return vm_disk_flush(d, err);
  if (strcmp(op, "crash") == 0 && n == 1)
    _exit(0); /* no flush, no close: as if the VMM had been killed here */
  return vs_error_set(err, EINVAL, "bad request line '%s'", line);
}

static int cmd_io(int argc, char **argv) {
  vm_disk *d = NULL;
  char **rest = NULL;
  const char *data_path = NULL;
  int r = open_for_cmd(argc, argv, false, "io", 1, &data_path, &d, &rest);
  if (r)
    return r < 0 ? 0 : r;
  vs_error *err = NULL;
  _cleanup_close_ int data_fd = -1;
  if (data_path && (data_fd = open(data_path, O_RDONLY | O_CLOEXEC)) < 0) {
    vs_error_set(&err, errno, "open %s", data_path);
    vm_disk_close(d, NULL);
    return fail(err);
  }
  char line[256];
  unsigned lineno = 0;
  while (fgets(line, sizeof(line), stdin)) {
    lineno++;
    line[strcspn(line, "\n")] = 0;
    if (run_io_line(d, data_fd, line, &err) < 0) {
      vs_error_wrap(&err, "line %u", lineno);
      vm_disk_close(d, NULL);
      return fail(err);
    }
  }
  if (vm_disk_close(d, &err) < 0)
    return fail(err);
  return 0;
}

int vmm_img_main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    fputs(img_usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *cmd = argv[1];
  argc--;
  argv++;
  optind = 1;
  if (strcmp(cmd, "create") == 0)
    return cmd_create(argc, argv);
  if (strcmp(cmd, "info") == 0)
    return cmd_info(argc, argv);
  if (strcmp(cmd, "read") == 0)
    return cmd_read(argc, argv);
  if (strcmp(cmd, "convert") == 0)
    return cmd_convert(argc, argv);
  if (strcmp(cmd, "io") == 0)
    return cmd_io(argc, argv);
  return usage_error("unknown command '%s'", cmd);
}
