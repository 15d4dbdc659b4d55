#!/usr/bin/env bash
# npm run test:compose: the docker-compose stack, built and run for real on this machine.
#
#   1. a docker daemon: the running one, else dockerd started here in the background (root);
#   2. the images, built locally (infra/docker/build-images.sh: Debian via debootstrap, Node 24,
#      the Kafka stand-in, the lambda-kappa image), since no image registry may be reachable;
#   3. the test (test/compose/composeStack.compose.ts, vitest.compose.config.ts): docker-compose.yml
#      with infra/docker/compose.ci.yml, the GraphQL answers against an oracle, a killed speed
#      replica, then `docker-compose down -v`.
#
# Needs: docker.io (dockerd, a docker client), docker-compose (1.29 or the v2 plugin),
# debootstrap, root for dockerd and debootstrap, Java and Maven for the Kafka jars (or a filled
# jar cache). `.ci/run` installs the Debian packages when they are missing.
# The daemon started here keeps running afterwards (its log: .lk/compose/dockerd.log), so a
# second run reuses it and the images.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n=== compose-ci: %s\n' "$*"; }
die() {
  printf '\n=== compose-ci: FAILED: %s\n' "$*" >&2
  exit 1
}
started=$SECONDS
timings=()
timed() {
  local name=$1 t0=$SECONDS rc=0
  shift
  "$@" || rc=$?
  timings+=("$(printf '  %-40s %5ss' "$name" $((SECONDS - t0)))")
  return $rc
}

mkdir -p .lk/compose

client_works() {
  local c
  for c in ${DOCKER:-} docker /usr/bin/docker; do
    [[ -n $c ]] && command -v "$c" >/dev/null 2>&1 && "$c" version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
  done
  return 1
}

# Removes pid file $1 unless the process it names is a $2, saying so.
remove_stale_pidfile() {
  local file=$1 owner=$2 pid comm
  [[ -f $file ]] || return 0
  pid=$(tr -dc '0-9' <"$file")
  comm=$([[ -n $pid ]] && cat "/proc/$pid/comm" 2>/dev/null || true)
  [[ $comm == "$owner" ]] && return 0
  echo "removing a stale $file (pid ${pid:-none} is ${comm:-not running}, not a $owner)"
  rm -f "$file"
}

# dockerd refuses to start while its pid file names a live process, and trusts its containerd's
# pid file the same way (a live pid there means "connect to it", and the daemon then times out on
# a socket nobody serves). A machine image taken while a daemon ran carries both files with dead
# pids, which on the booted machine may be any other process (the CI run failed exactly so). No
# daemon answers here (client_works said so), so the files are stale unless the pid is a dockerd
# that is still starting: that one gets 30 s to answer, then is stopped.
clear_stale_pidfiles() {
  local pid
  pid=$(tr -dc '0-9' </var/run/docker.pid 2>/dev/null || true)
  if [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]]; then
    echo "dockerd $pid is running but does not answer yet; waiting for it"
    for _ in $(seq 1 30); do
      client_works && return 0
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    client_works && return 0
    echo "dockerd $pid did not answer in 30 s; stopping it"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  remove_stale_pidfile /var/run/docker.pid dockerd
  remove_stale_pidfile /var/run/docker/containerd/containerd.pid containerd
}

start_dockerd() {
  client_works && {
    echo "docker daemon already running"
    return 0
  }
  command -v dockerd >/dev/null || die "dockerd is not installed (apt-get install -y docker.io)"
  ((EUID == 0)) || die "no docker daemon is running and starting one needs root"
  local logfile=.lk/compose/dockerd.log attempt flags
  clear_stale_pidfiles
  client_works && return 0
  # First the defaults; a sandbox that refuses iptables or bridges gets a daemon without them
  # (every container of the CI stack and every build step uses host networking anyway).
  for attempt in 1 2; do
    flags=()
    ((attempt == 2)) && flags=(--iptables=false --ip6tables=false --bridge=none)
    echo "starting dockerd ${flags[*]} (log: $logfile)"
    setsid dockerd "${flags[@]}" >>"$logfile" 2>&1 </dev/null &
    echo $! >.lk/compose/dockerd.pid
    for _ in $(seq 1 60); do
      client_works && return 0
      kill -0 "$(cat .lk/compose/dockerd.pid)" 2>/dev/null || break
      sleep 1
    done
    echo "dockerd did not come up; last lines of its log:"
    tail -n 15 "$logfile"
    kill "$(cat .lk/compose/dockerd.pid)" 2>/dev/null || true
    sleep 2
  done
  die "could not start dockerd (see .lk/compose/dockerd.log)"
}

log "docker daemon"
timed "dockerd" start_dockerd

log "images (infra/docker/build-images.sh)"
timed "images (debootstrap, node, kafka, lk)" infra/docker/build-images.sh --env-file .lk/compose/images.env
set -a
# shellcheck source=/dev/null
. .lk/compose/images.env
set +a

log "the stack test (vitest -c vitest.compose.config.ts)"
status=0
timed "stack test (up, checks, kill, down)" npx vitest run -c vitest.compose.config.ts "$@" || status=$?

printf '\n=== compose-ci: timings\n%s\n  %-40s %5ss\n' "$(printf '%s\n' "${timings[@]}")" total $((SECONDS - started))
((status == 0)) || die "the compose stack test failed (exit $status): its output above says which step and why"
echo "=== compose-ci: OK"
