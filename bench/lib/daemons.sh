# vesseld and Debian's dockerd 20.10 (docker.io) side by side for a benchmark, sourced by
# bench/daemon and bench/build. The caller sets `top` and `build` and calls:
#   daemons_start NAME [EXTRA_APPLET...]   private roots under a temporary $work, both daemons
#                                         up, the tests' busybox image loaded into each
#   dk SOCKET docker-args...               the same docker CLI against one of them ($vs, $ds)
# Each daemon gets a private data root, exec root and socket under $work, and the busybox image
# the integration tests build (tests/integration/test_daemon.py). dockerd runs with --bridge none
# --iptables=false --ip-masq=false in its own session, and is stopped with TERM to its process
# group (see shared/notes/docker-host.md); the /etc/docker/key.json it writes on its first start
# is removed again if it was not there before. Everything is undone on exit (a trap).

dk() { # dk SOCKET docker-args...
  local s=$1
  shift
  DOCKER_HOST=unix://$s docker "$@"
}

daemons_cleanup() {
  for s in "$vs" "$ds"; do
    if [ -S "$s" ]; then
      ids=$(dk "$s" ps -aq 2>/dev/null || true)
      [ -n "$ids" ] && dk "$s" rm -f $ids >/dev/null 2>&1 || true
    fi
  done
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  # dockerd's containerd ends after it: wait for everything that names the work directory
  for _ in $(seq 300); do pgrep -f "$work" >/dev/null || break; sleep 0.1; done
  { grep -o " $work[^ ]*" /proc/self/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
  rm -rf "$work"
  $had_key || rm -f "$key"
}

daemons_wait_sock() {
  for _ in $(seq 200); do
    dk "$1" version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$bench_name: no answer on $1" >&2
  exit 1
}

daemons_start() { # daemons_start NAME [EXTRA_APPLET...]
  bench_name=$1
  shift
  [ "$(id -u)" = 0 ] || { echo "$bench_name: needs root" >&2; exit 1; }
  command -v dockerd >/dev/null || { echo "$bench_name: dockerd is not installed (scripts/setup installs docker.io)" >&2; exit 1; }
  work=$(mktemp -d "/tmp/vessel-$bench_name-bench.XXXXXX")
  vs=$work/vesseld.sock
  ds=$work/dockerd.sock
  key=/etc/docker/key.json
  had_key=false
  [ -e "$key" ] && had_key=true
  pids=()
  trap daemons_cleanup EXIT

  # the tests' busybox image, with the applets the caller's workload needs
  (cd "$top/tests/integration" && /usr/bin/python3 -c "
import sys, test_daemon
test_daemon.EXTRA_APPLETS += sys.argv[2:]
test_daemon.busybox_archive(sys.argv[1])" "$work/busybox.tar" "$@")

  setsid "$build/vesseld" --data-root "$work/v-data" --exec-root "$work/v-exec" -H "unix://$vs" \
    --bridge none --log-level error 2>"$work/vesseld.log" </dev/null &
  vpid=$!
  pids+=($vpid)
  setsid dockerd --data-root "$work/d-data" --exec-root "$work/d-exec" --pidfile "$work/dockerd.pid" \
    -H "unix://$ds" --bridge none --iptables=false --ip-masq=false >"$work/dockerd.log" 2>&1 </dev/null &
  dpid=$!
  pids+=($dpid)
  daemons_wait_sock "$vs"
  daemons_wait_sock "$ds"
  for s in "$vs" "$ds"; do dk "$s" load -i "$work/busybox.tar" >/dev/null; done
}
