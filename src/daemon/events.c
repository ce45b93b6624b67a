/* The events bus: what happened to containers, images and volumes, kept in a ring of the last
 * VD_EVENTS_KEPT events and streamed to `GET /events` subscribers (with since, until and
 * filters), in dockerd's message format. Emitted from the loop and from workers (under
 * event_lock); delivered on the loop at the end of every iteration. */
#include "daemon/internal.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>

void vd_event_emit(vd_daemon *d, const char *type, const char *action, const char *id,
                   json_t *attrs) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (!attrs)
    attrs = json_object();
  json_t *ev =
      json_pack("{s:s, s:s, s:{s:s, s:o}, s:s, s:I, s:I}", "Type", type, "Action", action, "Actor",
                "ID", id, "Attributes", attrs, "scope", "local", "time", (json_int_t)ts.tv_sec,
                "timeNano", (json_int_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
  /* the fields older clients read */
  if (!strcmp(type, "container") || !strcmp(type, "image")) {
    json_object_set_new(ev, "status", json_string(action));
    json_object_set_new(ev, "id", json_string(id));
    const char *image = json_string_value(json_object_get(attrs, "image"));
    if (image)
      json_object_set_new(ev, "from", json_string(image));
  }
  pthread_mutex_lock(&d->event_lock);
  size_t slot = (size_t)(d->event_seq % VD_EVENTS_KEPT);
  json_decref(d->events[slot]);
  d->events[slot] = ev;
  d->event_seq++;
  pthread_mutex_unlock(&d->event_lock);
  uint64_t one = 1;
  /* wake the loop: delivery happens at the end of its iteration */
  if (write(d->donefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
    vs_log_debug("wake the loop for an event: %s", strerror(errno));
}

/* Attributes of a container's events: its name, image, labels. */
json_t *vd_event_ctr_attrs(const vd_container *c) {
  json_t *cfg = json_object_get(c->rec, "Config");
  json_t *a = json_object();
  json_object_update(a, json_object_get(cfg, "Labels"));
  json_object_set_new(a, "name", json_string(c->name ? c->name + 1 : ""));
  const char *img = json_string_value(json_object_get(cfg, "Image"));
  json_object_set_new(a, "image", json_string(img ? img : ""));
  return a;
}

static bool value_in(json_t *filters, const char *key, const char *v) {
  json_t *f = json_object_get(filters, key);
  if (!f)
    return true;
  size_t i;
  json_t *x;
  if (json_is_array(f)) {
    json_array_foreach(f, i, x) if (v && json_string_value(x) &&
                                    !strcmp(v, json_string_value(x))) return true;
    return json_array_size(f) == 0;
  }
  const char *k;
  size_t n = 0;
  json_object_foreach(f, k, x) {
    n++;
    if (v && json_is_true(x) && !strcmp(k, v))
      return true;
  }
  return n == 0;
}

/* Docker's event filters: type, event (action), container, image, volume, label. */
static bool event_matches(json_t *filters, json_t *ev) {
  if (!filters)
    return true;
  const char *type = json_string_value(json_object_get(ev, "Type"));
  json_t *actor = json_object_get(ev, "Actor");
  const char *id = json_string_value(json_object_get(actor, "ID"));
  json_t *attrs = json_object_get(actor, "Attributes");
  const char *name = json_string_value(json_object_get(attrs, "name"));
  /* "health_status" matches "health_status: healthy", as with dockerd */
  const char *action = json_string_value(json_object_get(ev, "Action"));
  _cleanup_free_ char *verb =
      vs_asprintf("%.*s", (int)strcspn(action ? action : "", ":"), action ? action : "");
  if (!value_in(filters, "type", type) ||
      (!value_in(filters, "event", action) && !value_in(filters, "event", verb)))
    return false;
  if (json_object_get(filters, "container") &&
      (strcmp(type, "container") != 0 ||
       (!value_in(filters, "container", id) && !value_in(filters, "container", name))))
    return false;
  if (json_object_get(filters, "image") &&
      !value_in(filters, "image", json_string_value(json_object_get(attrs, "image"))) &&
      !(type && !strcmp(type, "image") && value_in(filters, "image", id)))
    return false;
  if (json_object_get(filters, "volume") &&
      (strcmp(type, "volume") != 0 || !value_in(filters, "volume", id)))
    return false;
  json_t *labels = json_object_get(filters, "label");
  if (labels) {
    _cleanup_json_ json_t *want = json_array();
    if (json_is_array(labels))
      json_array_extend(want, labels);
    const char *k;
    json_t *x;
    if (json_is_object(labels)) {
      json_object_foreach(labels, k, x) json_array_append_new(want, json_string(k));
    }
    size_t i;
    json_array_foreach(want, i, x) {
      const char *l = json_string_value(x);
      const char *eq = l ? strchr(l, '=') : NULL;
      _cleanup_free_ char *key = eq ? vs_img_strndup(l, (size_t)(eq - l)) : vs_strdup(l ? l : "");
      const char *have = json_string_value(json_object_get(attrs, key));
      if (!have || (eq && strcmp(have, eq + 1) != 0))
        return false;
    }
  }
  return true;
}

static void deliver_to(vd_daemon *d, vd_conn *c) {
  while (!c->dead && c->stream == VD_STREAM_EVENTS) {
    pthread_mutex_lock(&d->event_lock);
    /* a reader that fell behind the ring skips what was overwritten */
    if (d->event_seq - c->event_seq > VD_EVENTS_KEPT)
      c->event_seq = d->event_seq - VD_EVENTS_KEPT;
    json_t *ev =
        c->event_seq < d->event_seq ? json_incref(d->events[c->event_seq % VD_EVENTS_KEPT]) : NULL;
    pthread_mutex_unlock(&d->event_lock);
    if (!ev)
      break;
    c->event_seq++;
    json_int_t t = json_integer_value(json_object_get(ev, "time"));
    if (c->events_until && t > c->events_until) {
      json_decref(ev);
      vd_conn_stream_end(c);
      return;
    }
    if (t >= c->events_since && event_matches(c->event_filters, ev)) {
      _cleanup_free_ char *text = json_dumps(ev, JSON_COMPACT);
      _cleanup_free_ char *line = vs_asprintf("%s\n", text);
      vd_conn_stream_write(c, line, strlen(line));
    }
    json_decref(ev);
  }
  vd_conn_flush(c);
}

void vd_events_deliver(vd_daemon *d) {
  for (vd_conn *c = d->conns, *next; c; c = next) {
    next = c->next;
    if (c->stream == VD_STREAM_EVENTS && !c->dead)
      deliver_to(d, c);
  }
}

void vd_events_timer(vd_conn *c) {
  /* until has come: what happened so far is out, the stream ends */
  deliver_to(c->d, c);
  if (!c->dead && c->stream == VD_STREAM_EVENTS)
    vd_conn_stream_end(c);
}

/* "1700000000", "1700000000.5" or an RFC 3339 time; seconds since the epoch, -1 if neither. */
static long long parse_time(const char *s) {
  if (!s || !*s)
    return 0;
  char *end;
  double v = strtod(s, &end);
  /* beyond some 30,000 years is no time a client means, and would not fit the long long */
  if (end != s && (*end == 0 || *end == '.'))
    return v >= 0 && v < 1e12 ? (long long)v : -1;
  struct tm tm = {0};
  if (strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
    return (long long)timegm(&tm);
  return -1;
}

void vd_h_events(vd_call *c) {
  vd_daemon *d = c->d;
  const char *q = c->req->query;
  _cleanup_free_ char *since = http_query_get(q, "since");
  _cleanup_free_ char *until = http_query_get(q, "until");
  _cleanup_free_ char *ftext = http_query_get(q, "filters");
  long long s = parse_time(since), u = parse_time(until);
  if (s < 0 || u < 0) {
    vd_call_error(c, 400, "invalid time: %s", s < 0 ? since : until);
    return;
  }
  json_t *filters = NULL;
  if (ftext && *ftext) {
    vs_error *e = NULL;
    filters = vs_json_loads(ftext, strlen(ftext), "filters", &e);
    if (!json_is_object(filters)) {
      vd_call_error(c, 400, "invalid filters: %s", e ? e->msg : "expected a JSON object");
      vs_error_free(e);
      json_decref(filters);
      return;
    }
  }
  vd_conn *conn = c->conn;
  c->streamed = true;
  conn->stream = VD_STREAM_EVENTS;
  conn->event_filters = filters;
  conn->events_since = s;
  conn->events_until = u;
  pthread_mutex_lock(&d->event_lock);
  uint64_t oldest = d->event_seq > VD_EVENTS_KEPT ? d->event_seq - VD_EVENTS_KEPT : 0;
  /* with since, the ring is replayed from its start; without, only what comes */
  conn->event_seq = since ? oldest : d->event_seq;
  pthread_mutex_unlock(&d->event_lock);
  vd_conn_stream_begin(conn, 200, "application/json");
  time_t now = time(NULL);
  if (u && u <= now) {
    vd_events_timer(conn);
    return;
  }
  if (u) {
    conn->events_timer = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK);
    struct itimerspec its = {.it_value = {.tv_sec = (time_t)u + 1}};
    conn->events_timer_src.kind = VD_SRC_EVENTS_TIMER;
    conn->events_timer_src.owner = conn;
    if (conn->events_timer < 0 ||
        timerfd_settime(conn->events_timer, TFD_TIMER_ABSTIME, &its, NULL) < 0 ||
        vd_loop_add(d, conn->events_timer, EPOLLIN, &conn->events_timer_src, NULL) < 0)
      vs_log_warn("events: cannot arm the until timer: %s", strerror(errno));
  }
  deliver_to(d, conn);
}

void vd_events_detach(vd_conn *c) {
  if (c->events_timer >= 0) {
    vd_loop_del(c->d, c->events_timer);
    close(c->events_timer);
    c->events_timer = -1;
  }
  json_decref(c->event_filters);
  c->event_filters = NULL;
}

void vd_events_free(vd_daemon *d) {
  for (size_t i = 0; i < VD_EVENTS_KEPT; i++) {
    json_decref(d->events[i]);
    d->events[i] = NULL;
  }
}
