# shellcheck shell=bash
# Shared by the scripts in scripts/chaos/ (sourced, not run). Finds the compose cluster that
# scripts/docker-cluster started: the project name comes from COMPOSE_PROJECT_NAME (default
# raftka), the external ports from .run/docker/<project>.env written by `docker-cluster up`.
# Containers and the network are found by compose's labels, so compose v1 and v2 (which name
# containers differently) both work, and the chaos scripts never need the compose tool itself.

CHAOS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$CHAOS_DIR/../.." && pwd)
PROJECT=${COMPOSE_PROJECT_NAME:-${RAFTKA_DOCKER_PROJECT:-raftka}}
if [[ -f $ROOT/.run/docker/$PROJECT.env ]]; then
  set -a
  # shellcheck disable=SC1090
  source "$ROOT/.run/docker/$PROJECT.env"
  set +a
fi
export RAFTKA_DOCKER_PROJECT=$PROJECT
N_BROKERS=3
# how long a script waits for the cluster to react or heal before it reports a failure
CHAOS_TIMEOUT=${RAFTKA_CHAOS_TIMEOUT:-60}

say() { echo "[chaos] $(date +%T.%3N) $*"; }
die() { echo "[chaos] error: $*" >&2; exit 1; }
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}
now() { date +%s.%N; }
elapsed() { python3 -c "import time; print(f'{time.time() - $1:.1f}')"; }

check_id() {
  [[ ${1:-} =~ ^[1-9][0-9]*$ ]] && (($1 <= N_BROKERS)) || die "broker id must be 1..$N_BROKERS, got '${1:-}'"
}

# container id of broker N (running or not)
container_of() {
  local id
  id=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=broker$1")
  [[ -n $id ]] || die "no container for broker$1 in compose project $PROJECT (scripts/docker-cluster up)"
  echo "$id"
}

status_of() { docker inspect -f '{{.State.Status}}' "$(container_of "$1")"; }

# the compose network the brokers talk on (docker-compose.yml: networks.raftka)
network() {
  local id
  id=$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.network=raftka")
  [[ -n $id ]] || id=$(docker network ls -q --filter "name=^${PROJECT}_raftka$")
  [[ -n $id ]] || die "no network raftka in compose project $PROJECT"
  echo "$id"
}

# true when broker N's container is attached to the cluster network
connected() {
  local net
  net=$(docker network inspect -f '{{.Name}}' "$(network)")
  docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$(container_of "$1")" |
    tr ' ' '\n' | grep -qx "$net"
}

py_state() { python3 "$CHAOS_DIR/cluster_state.py" "$@"; }
show_state() { py_state show --title "$1"; }
# wait_until WHAT ARGS... [--since EPOCH]: polls scripts/chaos/cluster_state.py wait
wait_until() { py_state wait "$@" --timeout "$CHAOS_TIMEOUT"; }

# waits until the container's own healthcheck says healthy
wait_healthy() {
  local c deadline=$((SECONDS + CHAOS_TIMEOUT)) st
  c=$(container_of "$1")
  while :; do
    st=$(docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$c")
    [[ $st == running/healthy ]] && return 0
    ((SECONDS < deadline)) || die "broker$1 is $st after ${CHAOS_TIMEOUT}s"
    sleep 0.2
  done
}

# "--seconds S" parsing shared by pause-broker and partition-broker
parse_seconds() {
  SECONDS_ARG=
  while (($#)); do
    case $1 in
      --seconds) [[ ${2:-} =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--seconds needs a number"; SECONDS_ARG=$2; shift 2 ;;
      *) die "unknown argument: $1" ;;
    esac
  done
}

do_kill() {
  local id=$1 c
  c=$(container_of "$id")
  [[ $(status_of "$id") == paused ]] && docker unpause "$c" >/dev/null
  # `docker kill` marks the container as stopped on purpose: restart: unless-stopped leaves it dead
  docker kill --signal KILL "$c" >/dev/null
  say "broker$id: SIGKILL (docker kill $(docker inspect -f '{{.Name}}' "$c" | tr -d /))"
}

do_start() {
  local id=$1 c
  c=$(container_of "$id")
  connected "$id" || reconnect "$id"
  docker start "$c" >/dev/null
  say "broker$id: docker start"
}

reconnect() {
  local id=$1
  docker network connect --alias "broker$id" "$(network)" "$(container_of "$id")"
  say "broker$id: network reconnected (docker network connect --alias broker$id)"
}

# After undoing a fault on broker $1: waits until the whole cluster has healed, or — when some
# other broker is deliberately down (killed, stopped) — only until broker $1 is healthy, since a
# full heal cannot happen then. $2 = the epoch the time is measured from.
wait_healed_unless_down() {
  local id=$1 since=$2 other st
  for ((other = 1; other <= N_BROKERS; other++)); do
    st=$(status_of "$other")
    if [[ $st != running ]]; then
      say "broker$other is $st: waiting only for broker$id to be healthy, not for a full heal"
      wait_healthy "$id"
      say "broker$id: healthy"
      return 0
    fi
  done
  wait_until healed --since "$since"
}
