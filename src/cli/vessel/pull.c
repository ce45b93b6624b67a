/* vessel pull / push / login / logout */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>
#include <termios.h>

int vessel_registry_args(int argc, char **argv, vs_registry_opts *o, vs_error **err) {
  static const struct option opts[] = {
      {"tls-verify", optional_argument, 0, 't'}, {"authfile", required_argument, 0, 'a'},
      {"platform", required_argument, 0, 'p'},   {"quiet", no_argument, 0, 'q'},
      {"username", required_argument, 0, 'u'},   {"password", required_argument, 0, 'P'},
      {"password-stdin", no_argument, 0, 'S'},   {"jobs", required_argument, 0, 'j'},
      {"chunk-size", required_argument, 0, 'C'}, {0, 0, 0, 0}};
  *o = (vs_registry_opts){.tls_verify = 1, .progress_fd = 2};
  int c;
  optind = 1;
  opterr = 1;
  while ((c = getopt_long(argc, argv, "+qu:p:", opts, NULL)) != -1) {
    switch (c) {
    case 't':
      o->tls_verify = !optarg || strcmp(optarg, "false") != 0;
      break;
    case 'a':
      o->auth_file = optarg;
      break;
    case 'p':
      o->platform = optarg;
      break;
    case 'q':
      o->quiet = true;
      break;
    case 'j':
      o->parallel = optarg ? (int)strtol(optarg, NULL, 10) : 0;
      break;
    case 'C':
      o->chunk_size = optarg ? strtoull(optarg, NULL, 10) : 0;
      break;
    case 'u':
    case 'P':
    case 'S':
      break; /* login reads these itself */
    default:
      return vs_error_set(err, EINVAL, "bad option");
    }
  }
  return optind;
}

int cmd_pull(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  vs_registry_opts o;
  int i = vessel_registry_args(argc, argv, &o, err);
  if (i < 0)
    return 125;
  if (i != argc - 1)
    return vs_error_set(err, EINVAL,
                        "usage: vessel pull [--platform OS/ARCH] [--tls-verify=false] IMAGE"),
           125;
  vs_store *s = vessel_store(ctx, err);
  if (!s)
    return 125;
  char digest[VS_DIGEST_MAX];
  if (vs_image_pull(s, argv[i], &o, digest, err) < 0)
    return 125;
  if (o.quiet)
    printf("%s\n", digest);
  return 0;
}

int cmd_push(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  vs_registry_opts o;
  int i = vessel_registry_args(argc, argv, &o, err);
  if (i < 0)
    return 125;
  if (i != argc - 1 && i != argc - 2)
    return vs_error_set(err, EINVAL, "usage: vessel push [--tls-verify=false] IMAGE [DESTINATION]"),
           125;
  vs_store *s = vessel_store(ctx, err);
  if (!s)
    return 125;
  const char *dest = i == argc - 2 ? argv[i + 1] : argv[i];
  return vs_image_push(s, argv[i], dest, &o, NULL, NULL, err) < 0 ? 125 : 0;
}

static char *read_secret(const char *prompt) {
  char buf[1024];
  struct termios old, quiet;
  bool tty = isatty(0) && tcgetattr(0, &old) == 0;
  if (tty) {
    fprintf(stderr, "%s", prompt);
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    tcsetattr(0, TCSANOW, &quiet);
  }
  char *r = fgets(buf, sizeof(buf), stdin);
  if (tty) {
    tcsetattr(0, TCSANOW, &old);
    fprintf(stderr, "\n");
  }
  if (!r)
    return NULL;
  buf[strcspn(buf, "\r\n")] = 0;
  return vs_strdup(buf);
}

int cmd_login(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  const char *user = NULL, *pass = NULL;
  bool from_stdin = false;
  for (int k = 1; k < argc; k++) {
    if ((!strcmp(argv[k], "-u") || !strcmp(argv[k], "--username")) && k + 1 < argc)
      user = argv[k + 1];
    else if ((!strcmp(argv[k], "-p") || !strcmp(argv[k], "--password")) && k + 1 < argc)
      pass = argv[k + 1];
    else if (!strcmp(argv[k], "--password-stdin"))
      from_stdin = true;
  }
  vs_registry_opts o;
  int i = vessel_registry_args(argc, argv, &o, err);
  if (i < 0)
    return 125;
  if (i != argc - 1)
    return vs_error_set(err, EINVAL,
                        "usage: vessel login [-u USER] [-p PASS | --password-stdin] REGISTRY"),
           125;
  _cleanup_free_ char *u = user ? vs_strdup(user) : NULL;
  _cleanup_free_ char *p = pass ? vs_strdup(pass) : NULL;
  if (!u) {
    fprintf(stderr, "Username: ");
    u = read_secret("");
  }
  if (!p)
    p = read_secret(from_stdin ? "" : "Password: ");
  if (!u || !p || !*u)
    return vs_error_set(err, EINVAL, "login: user name and password needed"), 125;
  if (vs_registry_login(argv[i], u, p, &o, err) < 0)
    return 125;
  printf("Login Succeeded!\n");
  return 0;
}

int cmd_logout(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  vs_registry_opts o;
  int i = vessel_registry_args(argc, argv, &o, err);
  if (i < 0)
    return 125;
  if (i != argc - 1)
    return vs_error_set(err, EINVAL, "usage: vessel logout REGISTRY"), 125;
  if (vs_registry_logout(argv[i], &o, err) < 0)
    return 125;
  printf("Removed login credentials for %s\n", argv[i]);
  return 0;
}
