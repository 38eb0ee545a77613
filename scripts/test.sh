#!/usr/bin/env bash
# Runs every check CI runs: formatting, vet, and all tests, including the sandbox
# integration tests (root and the image are required; they fail rather than skip).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "test: gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "test: gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...

echo "test: go test"
CODEEXEC_REQUIRE_INTEGRATION=1 go test -count=1 -timeout 20m ./...
