#!/usr/bin/env bash
# A real multi-node Ray cluster on one machine: a head and N worker raylets, token auth on, the
# dashboard and job server on 127.0.0.1. For trying cluster behaviour (trials spread over nodes,
# a node lost, `ray job submit`) without any cloud.
#
#   cluster/local_cluster.sh start [N]   # head + N workers (default 1), then prints how to submit
#   cluster/local_cluster.sh status
#   cluster/local_cluster.sh stop        # stops only the processes this script started
#
# Needs `ray` (with ray[default]) and `mfer-sweep` on PATH, e.g. `PATH=$PWD/.venv/bin:$PATH`.
# Settings (environment): MFER_LOCAL_CLUSTER_DIR (state, logs; default /tmp/mfer-lc: short, it
# holds unix sockets), MFER_LOCAL_CLUSTER_CPUS (CPUs per node, default 1).
set -euo pipefail

STATE="${MFER_LOCAL_CLUSTER_DIR:-/tmp/mfer-lc}"
CPUS="${MFER_LOCAL_CLUSTER_CPUS:-1}"
PIDS="$STATE/pids"

# Every process this script starts, and every client that talks to the cluster, uses token auth.
# `ray start --head` refuses token mode without a token, so make sure one exists
# (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or the default file ~/.ray/auth_token).
export RAY_AUTH_MODE=token
ensure_token() {
  if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ] && [ ! -s ~/.ray/auth_token ]; then
    ray get-auth-token --generate >/dev/null
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Each node is a `ray start --block` in its own session: stopping a node kills exactly its process
# group. `ray stop` would kill every Ray process of this user on the machine, other people's too.
start_node() {
  local log
  log="$STATE/node-$(wc -l <"$PIDS").log"
  setsid ray start --block --temp-dir="$STATE/ray" --num-cpus="$CPUS" --disable-usage-stats \
    --dashboard-agent-listen-port="$(free_port)" --ray-client-server-port="$(free_port)" "$@" >>"$log" 2>&1 &
  echo $! >>"$PIDS"
}

wait_for_port() {
  for _ in $(seq 1 120); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 1
  done
  echo "nothing listens on 127.0.0.1:$1 after 120 s; see $STATE/node-*.log, then run $0 stop" >&2
  return 1
}

start() {
  local workers="${1:-1}"
  if [ -s "$PIDS" ]; then
    echo "already started (see $PIDS); run '$0 stop' first" >&2
    exit 1
  fi
  mkdir -p "$STATE"
  : >"$PIDS"
  ensure_token
  local port dashboard
  port="$(free_port)"
  dashboard="$(free_port)"
  printf 'ADDRESS=127.0.0.1:%s\nDASHBOARD=http://127.0.0.1:%s\n' "$port" "$dashboard" >"$STATE/env"
  start_node --head --port="$port" --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$dashboard"
  wait_for_port "$dashboard"
  for _ in $(seq 1 "$workers"); do
    # The head already counts this machine's GPUs: workers sharing it must not count them again.
    start_node --address="127.0.0.1:$port" --num-gpus=0
  done
  cat <<EOF
Ray head up (GCS 127.0.0.1:$port, dashboard/job server http://127.0.0.1:$dashboard); $workers worker(s)
joining, which takes up to a minute: '$0 status' lists the nodes.
Submit a sweep (token auth: RAY_AUTH_MODE=token and the same token as the cluster):
  RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:$dashboard -- \\
      mfer-sweep search_space=quickstart name=demo storage_path=$PWD/sweeps cluster.address=auto
EOF
}

status() {
  # shellcheck source=/dev/null
  source "$STATE/env"
  ray status --address="$ADDRESS"
}

stop() {
  [ -s "$PIDS" ] || { echo "nothing to stop ($PIDS is empty)"; return 0; }
  # Workers first, then the head; SIGTERM lets each `ray start --block` take its node down.
  tac "$PIDS" | while read -r pid; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 5
  tac "$PIDS" | while read -r pid; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  rm -f "$PIDS"
  echo "stopped; logs stay under $STATE"
}

case "${1:-}" in
  start) start "${2:-1}" ;;
  status) status ;;
  stop) stop ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
