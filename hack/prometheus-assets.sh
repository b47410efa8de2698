#!/usr/bin/env bash
# Leave promtool and prometheus in a cache directory outside the repo, for the alert-rule tests
# (`promtool check rules`, `promtool test rules`) and the real-Prometheus test.
#
# Both come from Debian's `prometheus` package: `apt-get download` fetches the .deb into the cache
# (no install, no root needed once the apt lists are there) and `dpkg-deb -x` unpacks the two
# binaries. A cold run downloads about 20 MB; a warm run reuses the cache in well under a second.
#
# Usage: hack/prometheus-assets.sh          prints the bin directory on its last line
# Env:   MODELROUTE_PROMETHEUS_DIR          cache (default ~/.cache/modelroute-operator/prometheus)
set -euo pipefail

ASSETS_DIR="${MODELROUTE_PROMETHEUS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/modelroute-operator/prometheus}"
BIN_DIR="$ASSETS_DIR/bin"
PACKAGE="prometheus"
# Bump when the recipe changes what ends up in bin/: a cache from another recipe is rebuilt.
RECIPE_VERSION="1"
RECIPE_FILE="$ASSETS_DIR/recipe"

log() { printf '[prometheus-assets] %s\n' "$*" >&2; }
die() { printf '[prometheus-assets] ERROR: %s\n' "$*" >&2; exit 1; }

assets_ok() {
  [[ "$(cat "$RECIPE_FILE" 2>/dev/null)" == "$RECIPE_VERSION" ]] || return 1
  [[ -x "$BIN_DIR/promtool" && -x "$BIN_DIR/prometheus" ]] || return 1
  "$BIN_DIR/promtool" --version >/dev/null 2>&1 || return 1
  "$BIN_DIR/prometheus" --version >/dev/null 2>&1 || return 1
}

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@" || die "needs root for: $* (sudo -n failed)"
  else die "needs root to run: $* (no sudo); run 'apt-get update' as root and re-run."
  fi
}

download_deb() {
  # Into a fresh directory: apt-get download writes to the current directory. The package lists
  # of a fresh machine (a CI image) may be empty: refresh them once, only then.
  local work="$1"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; this script needs Debian's $PACKAGE package"
  if ! apt-cache show "$PACKAGE" >/dev/null 2>&1; then
    log "apt does not know '$PACKAGE' yet: apt-get update"
    as_root apt-get update -qq >&2 || die "apt-get update failed"
  fi
  log "downloading Debian's $PACKAGE package ($(apt-cache policy "$PACKAGE" | awk '/Candidate:/ {print $2}'))"
  # -o APT::Sandbox::User=root when root: the _apt user cannot write into a private directory.
  local opts=()
  [[ $(id -u) -eq 0 ]] && opts=(-o APT::Sandbox::User=root)
  (cd "$work" && apt-get "${opts[@]}" download -qq "$PACKAGE" >&2) || die "apt-get download $PACKAGE failed"
  find "$work" -maxdepth 1 -name "${PACKAGE}_*.deb" | head -1
}

main() {
  if assets_ok; then
    log "reusing cached promtool and prometheus in $BIN_DIR"
    echo "$BIN_DIR"
    return
  fi
  mkdir -p "$BIN_DIR"
  local deb
  WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/modelroute-prometheus.XXXXXX")
  trap 'rm -rf "$WORK_DIR"' EXIT
  local work="$WORK_DIR"
  deb=$(download_deb "$work")
  [[ -n "$deb" ]] || die "no ${PACKAGE}_*.deb after apt-get download"
  dpkg-deb -x "$deb" "$work/root" || die "dpkg-deb -x $deb failed"
  for tool in promtool prometheus; do
    [[ -x "$work/root/usr/bin/$tool" ]] || die "$deb has no usr/bin/$tool"
    install -m 0755 "$work/root/usr/bin/$tool" "$BIN_DIR/$tool"
  done
  echo "$RECIPE_VERSION" >"$RECIPE_FILE"
  assets_ok || die "promtool or prometheus does not run: check $BIN_DIR"
  log "ready: $("$BIN_DIR/promtool" --version 2>&1 | head -1)"
  echo "$BIN_DIR"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
