#!/usr/bin/env bash
# Leave etcd and kube-apiserver in a cache directory outside the repo, for the real-API-server tests.
#
# etcd comes from Debian's etcd-server package. kube-apiserver is built from Debian bookworm's
# `kubernetes` source package (1.20.2, vendored) with Debian's Go 1.19, after replacing the vendored
# github.com/modern-go/reflect2 1.0.1 (it crashes under Go >= 1.18 on the first custom-resource
# create) with Debian's 1.0.2, and after restoring the vendored OpenAPI type validator's null check
# (see patch_null_check). A cold run takes about 5 minutes on 2 cores; a warm run reuses the
# cache and takes well under a second.
#
# Usage: hack/envtest-assets.sh            prints the bin directory on its last line
# Env:   MODELROUTE_ASSETS_DIR             cache (default ~/.cache/modelroute-operator/envtest)
#        MODELROUTE_DEB_SRC_URI            Debian archive for the source package (default: the
#                                          machine's own apt sources, so mirrors and proxies apply)
#        MODELROUTE_APT_ETC                apt configuration to read sources from (default /etc/apt)
set -euo pipefail

ASSETS_DIR="${MODELROUTE_ASSETS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/modelroute-operator/envtest}"
BIN_DIR="$ASSETS_DIR/bin"
K8S_SOURCE_PACKAGE="kubernetes"
K8S_VERSION_PREFIX="1.20."
K8S_SUITE="bookworm"
# Bump whenever the build changes what the binary does: a cache stamped with another recipe is
# rebuilt, never reused. 2: the null-check patch (an empty string in a custom resource is not null).
RECIPE_VERSION="2"
RECIPE_FILE="$ASSETS_DIR/recipe"
DEBIAN_PACKAGES=(etcd-server golang-go golang-github-modern-go-reflect2-dev rsync jq dpkg-dev make openssl)

log() { printf '[envtest-assets] %s\n' "$*" >&2; }
die() { printf '[envtest-assets] ERROR: %s\n' "$*" >&2; exit 1; }

assets_ok() {
  [[ "$(cat "$RECIPE_FILE" 2>/dev/null)" == "$RECIPE_VERSION" ]] || return 1
  [[ -x "$BIN_DIR/etcd" && -x "$BIN_DIR/kube-apiserver" ]] || return 1
  "$BIN_DIR/etcd" --version >/dev/null 2>&1 || return 1
  "$BIN_DIR/kube-apiserver" --version 2>/dev/null | grep -q "v$K8S_VERSION_PREFIX" || return 1
}

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@" || die "needs root for: $* (sudo -n failed)"
  else die "needs root to run: $* (no sudo). Install the Debian packages ${DEBIAN_PACKAGES[*]} and re-run."
  fi
}

install_debian_packages() {
  local missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; this script needs Debian bookworm packages: ${missing[*]}"
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq || die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
      || die "apt-get install ${missing[*]} failed"
  fi
}

install_etcd() {
  local etcd
  etcd=$(command -v etcd || true)
  [[ -n "$etcd" ]] || etcd=/usr/bin/etcd
  [[ -x "$etcd" ]] || die "etcd not found after installing etcd-server"
  install -m 0755 "$etcd" "$BIN_DIR/etcd"
  log "etcd: $("$BIN_DIR/etcd" --version | head -1)"
}

apt_source_entries() {
  # Prints "URI SUITE SIGNED_BY" for every enabled `deb`/`deb-src` entry of the machine's apt
  # sources: one-line files (*.list) and deb822 files (*.sources), as apt itself reads them.
  local f
  local etc="${MODELROUTE_APT_ETC:-/etc/apt}"
  for f in "$etc/sources.list" "$etc"/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    awk '
      /^[[:space:]]*deb(-src)?[[:space:]]/ {
        signed = "-"; i = 2
        if ($2 ~ /^\[/) {
          while (i <= NF) {
            if ($i ~ /signed-by=/) { v = $i; sub(/.*signed-by=/, "", v); sub(/\]$/, "", v); signed = v }
            if ($i ~ /\]$/) { i++; break }
            i++
          }
        }
        print $i, $(i + 1), signed
      }' "$f"
  done
  for f in "$etc"/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    awk '
      function flush(   n, m, a, b, j, k) {
        if (types ~ /(^|[[:space:]])deb(-src)?([[:space:]]|$)/ && enabled != "no") {
          n = split(uris, a, /[[:space:]]+/); m = split(suites, b, /[[:space:]]+/)
          for (j = 1; j <= n; j++) for (k = 1; k <= m; k++) if (a[j] != "" && b[k] != "")
            print a[j], b[k], (signed == "" ? "-" : signed)
        }
        types = uris = suites = signed = enabled = ""
      }
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { flush(); next }
      /^Types:/      { sub(/^Types:[[:space:]]*/, "");      types = $0 }
      /^URIs:/       { sub(/^URIs:[[:space:]]*/, "");       uris = $0 }
      /^Suites:/     { sub(/^Suites:[[:space:]]*/, "");     suites = $0 }
      /^Signed-By:/  { sub(/^Signed-By:[[:space:]]*/, "");  signed = $0 }
      /^Enabled:/    { sub(/^Enabled:[[:space:]]*/, "");    enabled = $0 }
      END { flush() }' "$f"
  done
}

deb_src_line() {
  # The archive that serves Debian's main suites on this machine: an entry for the suite itself
  # (not -updates or -security), preferring bookworm. The source package only exists there.
  local uri="${MODELROUTE_DEB_SRC_URI:-}" signed="/usr/share/keyrings/debian-archive-keyring.gpg"
  if [[ -z "$uri" ]]; then
    local entry
    entry=$(apt_source_entries | awk -v want="$K8S_SUITE" '
      $2 == want { print; found = 1; exit }
      $2 !~ /-/ && $1 ~ /debian/ && !fallback { fallback = $0 }
      END { if (!found && fallback) print fallback }')
    [[ -n "$entry" ]] || die "no Debian archive in the apt sources under ${MODELROUTE_APT_ETC:-/etc/apt} \
(set MODELROUTE_DEB_SRC_URI to a Debian mirror, e.g. http://deb.debian.org/debian)"
    uri=$(awk '{print $1}' <<<"$entry")
    local entry_signed
    entry_signed=$(awk '{print $3}' <<<"$entry")
    [[ "$entry_signed" == /* && -f "$entry_signed" ]] && signed="$entry_signed"
  fi
  echo "deb-src [signed-by=$signed] $uri $K8S_SUITE main"
}

fetch_kubernetes_source() {
  # A private apt configuration (own sources list and lists directory) so the system's apt state
  # is never touched: `apt-get update` with another sources list would drop the system's lists.
  local work="$1" apt_dir="$1/apt"
  mkdir -p "$apt_dir/lists/partial"
  local line
  line=$(deb_src_line)
  log "source list: $line"
  echo "$line" >"$apt_dir/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "Dir::State::Lists=$apt_dir/lists" -o "APT::Sandbox::User=root")
  log "fetching Debian bookworm source package '$K8S_SOURCE_PACKAGE' (about 30 MB)"
  apt-get "${opts[@]}" update -qq >&2 || die "apt-get update of the deb-src list failed"
  (cd "$work" && apt-get "${opts[@]}" source -qq "$K8S_SOURCE_PACKAGE" >&2) \
    || die "apt-get source $K8S_SOURCE_PACKAGE failed"
}

patch_null_check() {
  # The vendored OpenAPI type validator decides "null" with reflect.DeepEqual against the zero
  # value. Built with Go >= 1.19, an empty string in an interface shares the runtime's zero value,
  # so "" in a custom resource (and every CRD with `default: ""`) is rejected as null. Restore the
  # check the release had with the Go it was made for: only a nil value is null.
  local src="$1" rel file
  local pattern='data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))'
  for rel in vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go \
             vendor/github.com/go-openapi/validate/type.go; do
    file="$src/$rel"
    [[ -f "$file" ]] || die "null-check patch: $rel not found in the source package"
    grep -qF "$pattern" "$file" || die "null-check patch: pattern not found in $rel: $pattern"
    sed -i 's/data == nil || reflect\.DeepEqual(reflect\.Zero(reflect\.TypeOf(data)), reflect\.ValueOf(data))/data == nil/' "$file"
    ! grep -qF "$pattern" "$file" || die "null-check patch: $rel still has the pattern after sed"
    log "patched the null check in $rel"
  done
}

build_kube_apiserver() {
  local work="$1" src
  src=$(find "$work" -maxdepth 1 -type d -name "${K8S_SOURCE_PACKAGE}-${K8S_VERSION_PREFIX}*" | head -1)
  [[ -n "$src" ]] || die "no ${K8S_SOURCE_PACKAGE}-${K8S_VERSION_PREFIX}* directory after apt-get source"
  local vendored="$src/vendor/github.com/modern-go/reflect2"
  local debian_reflect2=/usr/share/gocode/src/github.com/modern-go/reflect2
  [[ -d "$vendored" ]] || die "vendored reflect2 not found at $vendored"
  [[ -f "$debian_reflect2/reflect2.go" ]] || die "Debian reflect2 1.0.2 not found at $debian_reflect2"
  log "replacing vendored modern-go/reflect2 1.0.1 with Debian's 1.0.2"
  rm -rf "$vendored" && cp -r "$debian_reflect2" "$vendored"
  patch_null_check "$src"
  log "building kube-apiserver in $src (about 4 minutes on 2 cores)"
  local started=$SECONDS
  (cd "$src" && GOFLAGS=-mod=vendor GO111MODULE=on GOCACHE="$work/gocache" GOPATH="$work/gopath" \
      make WHAT=cmd/kube-apiserver >&2) || die "make WHAT=cmd/kube-apiserver failed (see output above)"
  local built
  built=$(find "$src/_output" -type f -name kube-apiserver -perm -u+x | head -1)
  [[ -n "$built" ]] || die "build finished but no kube-apiserver binary under $src/_output"
  install -m 0755 "$built" "$BIN_DIR/kube-apiserver"
  log "kube-apiserver built in $((SECONDS - started)) s: $("$BIN_DIR/kube-apiserver" --version)"
}

main() {
  if assets_ok; then
    log "reusing cached assets in $BIN_DIR"
    echo "$BIN_DIR"
    return
  fi
  log "assets missing or from another build recipe in $BIN_DIR: building them (cold, about 5 minutes)"
  mkdir -p "$BIN_DIR"
  install_debian_packages
  command -v go >/dev/null 2>&1 || export PATH="/usr/lib/go/bin:$PATH"
  go version >&2 || die "go not found after installing golang-go"
  install_etcd
  BUILD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/modelroute-envtest-build.XXXXXX")
  trap 'rm -rf "$BUILD_DIR"' EXIT
  fetch_kubernetes_source "$BUILD_DIR"
  build_kube_apiserver "$BUILD_DIR"
  echo "$RECIPE_VERSION" >"$RECIPE_FILE"
  assets_ok || die "assets were built but do not run: check $BIN_DIR"
  log "assets ready in $BIN_DIR"
  echo "$BIN_DIR"
}

# Sourcing the script (the unit tests do) defines the functions without building anything.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
