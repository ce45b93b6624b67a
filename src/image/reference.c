/* Image references, normalised the way docker does. */
#include "image/image.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

static bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

/* One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */
static bool path_component_valid(const char *s, size_t n) {
  if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
    return false;
  for (size_t i = 0; i < n;) {
    if (is_lower_alnum(s[i])) {
      i++;
      continue;
    }
    size_t j = i;
    if (s[i] == '.') {
      j++;
    } else if (s[i] == '_') {
      j++;
      if (j < n && s[j] == '_')
        j++;
    } else if (s[i] == '-') {
      while (j < n && s[j] == '-')
        j++;
    } else {
      return false;
    }
    if (j >= n || !is_lower_alnum(s[j]))
      return false;
    i = j;
  }
  return true;
}

static bool repository_valid(const char *s) {
  size_t total = strlen(s);
  if (total == 0 || total > 255)
    return false;
  while (*s) {
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (!path_component_valid(s, n))
      return false;
    if (!slash)
      break;
    s = slash + 1;
    if (!*s)
      return false;
  }
  return true;
}

static bool domain_valid(const char *s) {
  const char *colon = strrchr(s, ':');
  size_t host_len = colon ? (size_t)(colon - s) : strlen(s);
  if (host_len == 0)
    return false;
  for (size_t i = 0; i < host_len; i++) {
    char c = s[i];
    if (!(isalnum((unsigned char)c) || c == '-' || c == '.'))
      return false;
    if ((c == '.' || c == '-') && (i == 0 || i == host_len - 1))
      return false;
  }
  if (colon) {
    const char *p = colon + 1;
    if (!*p || strlen(p) > 5)
      return false;
    for (; *p; p++)
      if (!isdigit((unsigned char)*p))
        return false;
  }
  return true;
}

static bool tag_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 128)
    return false;
  if (!(isalnum((unsigned char)s[0]) || s[0] == '_'))
    return false;
  for (size_t i = 1; i < n; i++)
    if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
      return false;
  return true;
}

void vs_image_ref_clear(vs_image_ref *r) {
  free(r->registry);
  free(r->repository);
  free(r->tag);
  free(r->digest);
  memset(r, 0, sizeof(*r));
}

int vs_image_ref_parse(const char *input, vs_image_ref *out, vs_error **err) {
  memset(out, 0, sizeof(*out));
  if (!input || !*input)
    return vs_error_set(err, 0, "empty image reference");
  if (strlen(input) > 1024)
    return vs_error_set(err, 0, "image reference too long");
  _cleanup_free_ char *s = vs_strdup(input);
  char *at = strrchr(s, '@');
  if (at) {
    *at = 0;
    if (!vs_digest_valid(at + 1))
      return vs_error_set(err, 0, "invalid reference %s: bad digest %s", input, at + 1);
    out->digest = vs_strdup(at + 1);
  }
  char *slash = strrchr(s, '/');
  char *colon = strrchr(s, ':');
  if (colon && (!slash || colon > slash)) {
    *colon = 0;
    if (!tag_valid(colon + 1)) {
      vs_image_ref_clear(out);
      return vs_error_set(err, 0, "invalid reference %s: bad tag \"%s\"", input, colon + 1);
    }
    out->tag = vs_strdup(colon + 1);
  }
  const char *name = s;
  char *first = strchr(s, '/');
  if (first) {
    *first = 0;
    if (strchr(s, '.') || strchr(s, ':') || !strcmp(s, "localhost") ||
        strpbrk(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")) {
      if (!domain_valid(s)) {
        vs_image_ref_clear(out);
        return vs_error_set(err, 0, "invalid reference %s: bad registry \"%s\"", input, s);
      }
      out->registry = vs_strdup(!strcmp(s, "index.docker.io") ? "docker.io" : s);
      name = first + 1;
    } else {
      *first = '/';
    }
  }
  if (!out->registry)
    out->registry = vs_strdup("docker.io");
  if (!strcmp(out->registry, "docker.io") && !strchr(name, '/'))
    out->repository = vs_asprintf("library/%s", name);
  else
    out->repository = vs_strdup(name);
  if (!repository_valid(out->repository)) {
    int upper = strpbrk(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != NULL;
    vs_image_ref_clear(out);
    return vs_error_set(err, 0, "invalid reference %s: %s", input,
                        upper ? "repository name must be lowercase" : "bad repository name");
  }
  if (!out->tag && !out->digest)
    out->tag = vs_strdup("latest");
  return 0;
}

char *vs_image_ref_name(const vs_image_ref *r) {
  return vs_asprintf("%s/%s", r->registry, r->repository);
}

char *vs_image_ref_string(const vs_image_ref *r) {
  if (r->tag)
    return vs_asprintf("%s/%s:%s", r->registry, r->repository, r->tag);
  return vs_asprintf("%s/%s@%s", r->registry, r->repository, r->digest);
}

char *vs_image_name_familiar(const char *full) {
  if (!strncmp(full, "docker.io/library/", 18))
    return vs_strdup(full + 18);
  if (!strncmp(full, "docker.io/", 10))
    return vs_strdup(full + 10);
  return vs_strdup(full);
}
