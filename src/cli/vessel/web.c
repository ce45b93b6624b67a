/* vessel web passwd: set the web console's password (docs/web.md). The password goes to vesseld
 * over its root-only unix socket, which keeps the hash; it is read from standard input (one
 * line), or asked for twice without echo when that is a terminal. */
#include "cli.h"

#include <errno.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define PASSWORD_MAX 1024

/* One line from stdin without its newline; NULL at an empty input. */
static char *read_line(FILE *in) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n = getline(&line, &cap, in);
  if (n <= 0) {
    free(line);
    return NULL;
  }
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
    line[--n] = 0;
  return line;
}

/* Ask on the terminal with echo off. */
static char *prompt_hidden(const char *prompt) {
  struct termios saved, t;
  fputs(prompt, stderr);
  fflush(stderr);
  bool tty = tcgetattr(0, &saved) == 0;
  if (tty) {
    t = saved;
    t.c_lflag &= ~(tcflag_t)ECHO;
    tcsetattr(0, TCSAFLUSH, &t);
  }
  char *line = read_line(stdin);
  if (tty)
    tcsetattr(0, TCSAFLUSH, &saved);
  fputs("\n", stderr);
  return line;
}

static void wipe_free(char *s) {
  if (s)
    explicit_bzero(s, strlen(s));
  free(s);
}

static int web_passwd(vessel_ctx *ctx, vs_error **err) {
  char *pw = NULL;
  if (isatty(0)) {
    pw = prompt_hidden("New web console password: ");
    char *again = pw ? prompt_hidden("Again: ") : NULL;
    bool same = pw && again && !strcmp(pw, again);
    wipe_free(again);
    if (!same) {
      wipe_free(pw);
      return vs_error_set(err, EINVAL, "the passwords differ"), 1;
    }
  } else {
    pw = read_line(stdin);
  }
  if (!pw || !*pw) {
    wipe_free(pw);
    return vs_error_set(err, EINVAL, "no password given (one line on standard input)"), 1;
  }
  if (strlen(pw) > PASSWORD_MAX) {
    wipe_free(pw);
    return vs_error_set(err, EINVAL, "the password is longer than %d bytes", PASSWORD_MAX), 1;
  }
  json_t *body = json_pack("{s:s}", "Password", pw);
  wipe_free(pw);
  int status = vessel_api_json(ctx, "POST", "/vessel/v1/web/password", body, NULL, err);
  json_decref(body);
  if (status < 0 || status >= 400)
    return 1;
  fprintf(stderr, "web console password set; existing web sessions ended\n");
  return 0;
}

int cmd_web(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  if (argc == 2 && !strcmp(argv[1], "passwd"))
    return web_passwd(ctx, err);
  return vs_error_set(err, 0, "usage: vessel web passwd   (the password is read from stdin)"), 125;
}
