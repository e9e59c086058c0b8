#!/usr/bin/env bash
# Builds the GitOps controllers the tests run, from their upstream Go modules, into a cache
# outside the clone keyed by every file of this directory, and prints the directory that
# holds them:
#   argocd                Argo CD v3.6.2's application-controller and repo-server (and the
#                         git ask-pass helper), one binary chosen by program name or by its
#                         first argument: `argocd application-controller ...` (argocd/)
#   source-controller     Flux source-controller v1.9.6 (flux/source-controller.mod)
#   kustomize-controller  Flux kustomize-controller v1.9.6 (flux/kustomize-controller.mod)
#   gitserver             a smart-HTTP git server: `git http-backend` behind net/http/cgi
#   git-verify-wrapper.sh, gpg-wrapper.sh, git-ask-pass.sh
#                         Argo CD's helpers the repo server runs from PATH (from its module)
#   crds/argocd/*.yaml    Argo CD's CRDs (manifests/crds of the module)
#   crds/flux/*.yaml      Flux's CRDs (config/crd/bases of both controllers)
# Redis (for Argo CD) is Debian's redis-server, installed with apt-get when missing.
#
# Argo CD v3.6.2 declares Go 1.27: its build alone runs with GOTOOLCHAIN=go1.27.3 (the go
# command fetches that toolchain from the module proxy). `go install` of the controllers
# fails on their modules' replace directives: Argo CD is built from a wrapper module that
# copies argo-cd's replace block; each Flux controller from its module directory with a
# copy of its go.mod (-modfile) that drops `replace .../api => ./api` (the zip leaves
# api/ out; the api module comes from the proxy), source-controller's also pinning
# github.com/fluxcd/pkg/artifact to v0.18.0 (the proxy refuses v0.18.2 and v0.18.3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ARGOCD_VERSION=v3.6.2
FLUX_VERSION=v1.9.6

if ! command -v redis-server > /dev/null; then
  echo "gitops: installing redis-server (Debian) for Argo CD" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } >&2
fi

key=$(cd "$here" && find . -type f | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)
cache=${FLOWSTOP_CACHE:-$HOME/.cache/flowstop}
out="$cache/gitops/argocd-$ARGOCD_VERSION-flux-$FLUX_VERSION-$key"
done_marker="$out/.complete"
if [ -f "$done_marker" ]; then echo "$out"; exit 0; fi
# Tests running in parallel may ask for it: one builds, the others wait.
mkdir -p "$cache/gitops"
exec 9> "$out.lock"
flock 9
if [ -f "$done_marker" ]; then echo "$out"; exit 0; fi

tmp="$out.tmp"
rm -rf "$tmp"
mkdir -p "$tmp/crds/argocd" "$tmp/crds/flux"
export CGO_ENABLED=0
ldflags="-s -w"
timed() { # what, command...: runs it, then says how long it took
  local what=$1 start=$SECONDS; shift
  "$@"
  echo "gitops: $what in $((SECONDS - start)) s" >&2
}

build_gitserver() {
  (cd "$here/gitserver" && go build -trimpath -ldflags "$ldflags" -o "$tmp/gitserver" .)
}

build_argocd() (
  export GOTOOLCHAIN=go1.27.3
  cd "$here/argocd"
  # As argo-cd's Makefile stamps it (else it reports v99.99.99+unknown).
  go build -trimpath -ldflags "$ldflags -X github.com/argoproj/argo-cd/v3/common.version=${ARGOCD_VERSION#v}" \
    -o "$tmp/argocd" .
  local dir
  dir=$(go list -m -f '{{.Dir}}' "github.com/argoproj/argo-cd/v3")
  cp "$dir"/manifests/crds/*-crd.yaml "$tmp/crds/argocd/"
  chmod 644 "$tmp"/crds/argocd/*
  for f in git-verify-wrapper.sh gpg-wrapper.sh git-ask-pass.sh; do
    cp "$dir/hack/$f" "$tmp/$f"
    chmod 755 "$tmp/$f"
  done
)

build_flux() ( # controller
  local c=$1 dir
  dir=$(go mod download -json "github.com/fluxcd/$c@$FLUX_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { echo "gitops: no module directory for $c@$FLUX_VERSION" >&2; exit 1; }
  cd "$dir"
  go build -mod=readonly -modfile="$here/flux/$c.mod" -trimpath -ldflags "$ldflags" -o "$tmp/$c" .
  cp "$dir"/config/crd/bases/*.yaml "$tmp/crds/flux/"
  chmod 644 "$tmp"/crds/flux/*
)

{
  timed "gitserver" build_gitserver
  timed "source-controller $FLUX_VERSION" build_flux source-controller
  timed "kustomize-controller $FLUX_VERSION" build_flux kustomize-controller
  timed "argocd $ARGOCD_VERSION (application-controller, repo-server)" build_argocd
} >&2
touch "$tmp/.complete"
rm -rf "$out"
mv "$tmp" "$out"
echo "$out"
