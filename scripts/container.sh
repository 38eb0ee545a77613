#!/usr/bin/env bash
# Builds the OCI image of codeexec: a Debian base made by mmdebstrap (no registry image
# is pulled), the sandbox images in its store, and a static codeexec binary serving
# `codeexec serve` on 0.0.0.0:8080. Run as root on Debian. Idempotent and cached: the
# base is remade only when its package list changes, the sandbox-image layer only when
# an image changes; a rebuild with a new binary adds one small layer.
#
#   scripts/container.sh [--tag NAME:TAG] [--images python,ml] [--suite trixie]
#
# Environment: CODEEXEC_STORE (the host store the sandbox images are built in and
# copied from, default /var/lib/codeexec).
set -euo pipefail
cd "$(dirname "$0")/.."

tag=localhost/codeexec:latest
images=python
suite=trixie
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag=$2; shift 2 ;;
    --images) images=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "container: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "container: run as root (the sandbox image build and buildah's mounts need it)" >&2
  exit 1
fi

need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v buildah >/dev/null || need+=(buildah)
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if [ ${#need[@]} -gt 0 ]; then
  echo "container: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/local/go/bin"
store=${CODEEXEC_STORE:-/var/lib/codeexec}

echo "container: building bin/codeexec"
CGO_ENABLED=0 go build -trimpath -o bin/codeexec ./cmd/codeexec

# The sandbox images: built in the host's store (a no-op when current), then copied.
ids=()
mirror=
for name in ${images//,/ }; do
  if [ "$name" = python ]; then
    bin/codeexec image build --store "$store"
  elif ! bin/codeexec image info --store "$store" "$name" >/dev/null 2>&1; then
    echo "container: no image $name in $store: build it first (codeexec image build --name $name …)" >&2
    exit 1
  fi
  info=$(bin/codeexec image info --store "$store" "$name")
  hash=$(sed -n 's/^  "recipe_hash": "\([0-9a-f]*\)",$/\1/p' <<<"$info")
  [ -n "$hash" ] || { echo "container: no recipe_hash in the manifest of $name" >&2; exit 1; }
  ids+=("$name-$hash")
  [ -n "$mirror" ] || mirror=$(sed -n 's/^  "mirror": "\(.*\)",$/\1/p' <<<"$info")
done
mirror=${mirror:-http://deb.debian.org/debian}

# exists IMAGE LABEL VALUE: IMAGE exists and its LABEL is VALUE.
exists() {
  [ "$(podman image inspect --format "{{index .Labels \"$2\"}}" "$1" 2>/dev/null)" = "$3" ]
}

# 1. The base: Debian's essential set (no apt: nothing is installed at run time), tini
# as pid 1 (it reaps orphans and forwards SIGTERM to the server, which drains) and the
# CA certificates the upstream model's HTTPS needs.
base_pkgs="tini,ca-certificates"
base_key=$(printf '%s\n' "$suite" "$mirror" "$base_pkgs" essential 1 | sha256sum | cut -c1-12)
base=localhost/codeexec-base:$suite-$base_key
if exists "$base" io.codeexec.base "$base_key"; then
  echo "container: base $base is current"
else
  echo "container: making the base rootfs ($suite, essential + $base_pkgs) with mmdebstrap"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mmdebstrap --quiet --variant=essential --include="$base_pkgs" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    "$suite" "$tmp/base.tar" "$mirror"
  podman import --quiet --change "LABEL io.codeexec.base=$base_key" "$tmp/base.tar" "$base" >/dev/null
  rm -rf "$tmp"
  trap - EXIT
fi

# 2. The sandbox images, one layer, remade when the set or the base changes.
store_key=$(printf '%s\n' "$base_key" "${ids[@]}" | sha256sum | cut -c1-12)
stored=localhost/codeexec-store:$store_key
if exists "$stored" io.codeexec.store "$store_key"; then
  echo "container: sandbox images ${ids[*]} are current"
else
  echo "container: adding the sandbox images ${ids[*]}"
  ctr=$(buildah from --quiet "$base")
  trap 'buildah rm "$ctr" >/dev/null' EXIT
  root=$(buildah mount "$ctr")
  mkdir -p "$root/var/lib/codeexec/images"
  for id in "${ids[@]}"; do
    # cp -a keeps the owners, modes and hard links of the rootfs as the build made them.
    cp -a "$store/images/$id" "$root/var/lib/codeexec/images/"
  done
  buildah unmount "$ctr" >/dev/null
  buildah config --label "io.codeexec.store=$store_key" "$ctr"
  buildah commit --quiet --rm "$ctr" "$stored" >/dev/null
  trap - EXIT
fi

# 3. The binary and the configuration: the one layer that changes with the code.
# container-init fits the container's mounts and cgroups for nesting sandboxes (see
# internal/container), then becomes tini, which runs the server as its child.
old=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
ctr=$(buildah from --quiet "$stored")
trap 'buildah rm "$ctr" >/dev/null' EXIT
buildah copy --quiet --chmod 0755 "$ctr" bin/codeexec /usr/local/bin/codeexec >/dev/null
version=$(git describe --always --dirty 2>/dev/null || echo unknown)
buildah config \
  --entrypoint '["/usr/local/bin/codeexec", "container-init", "--", "/usr/bin/tini", "--", "/usr/local/bin/codeexec", "serve"]' --cmd '' \
  --env CODEEXEC_ADDR=0.0.0.0:8080 --env CODEEXEC_STORE=/var/lib/codeexec \
  --port 8080 --workingdir / --stop-signal SIGTERM \
  --label org.opencontainers.image.title=codeexec \
  --label "org.opencontainers.image.version=$version" \
  --label "io.codeexec.images=${ids[*]}" \
  "$ctr"
buildah commit --quiet --rm "$ctr" "$tag" >/dev/null
trap - EXIT
new=$(podman image inspect --format '{{.Id}}' "$tag")
if [ -n "$old" ] && [ "$old" != "$new" ]; then
  podman rmi "$old" >/dev/null 2>&1 || true # still used by a container: left to the operator
fi
size=$(podman image inspect --format '{{.Size}}' "$tag")
echo "container: $tag ($((size >> 20)) MiB) — run it as README.md's \"Deploying on Kubernetes\" shows"
