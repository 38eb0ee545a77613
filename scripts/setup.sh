#!/usr/bin/env bash
# Sets up codeexec on a Debian 12 host: system packages, the binary, the sandbox image.
# Run as root. Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup: run as root (sandboxes need root to create namespaces and cgroups)" >&2
  exit 1
fi

need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v git >/dev/null || need+=(git)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

export PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null; then
  echo "setup: Go (1.21 or newer; it fetches the 1.26 toolchain itself) is needed on PATH (https://go.dev/doc/install)" >&2
  exit 1
fi

echo "setup: building bin/codeexec"
CGO_ENABLED=0 go build -trimpath -o bin/codeexec ./cmd/codeexec
bin/codeexec image build
