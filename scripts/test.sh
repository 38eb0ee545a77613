#!/usr/bin/env bash
# Runs every check CI runs: formatting, vet, and all tests, including the sandbox
# integration tests (root and the image are required; they fail rather than skip).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

# The client tests drive the gateway with Node's openai package and curl, and the MCP
# server with the MCP SDK and Inspector (test/mcp), and the Responses API with openai,
# the OpenAI Agents SDK and the AI SDK (test/responses).
need=()
command -v node >/dev/null || need+=(nodejs npm)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "test: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "test: gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "test: gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...

echo "test: go test"
CODEEXEC_REQUIRE_INTEGRATION=1 go test -count=1 -timeout 20m ./...

# The Helm chart: lint, render and strict decoding into the Kubernetes API types, in a
# module of its own so that the Helm SDK stays out of codeexec's build.
echo "test: the Helm chart (deploy/helm)"
(cd deploy/helm && go vet ./... && go test -count=1 ./...)

# Every decoder of untrusted input gets a short fuzzing run: HTTP bodies, upstream
# replies and streams, the sandbox harness's report, the zygote's messages and the
# egress proxy's reading of a sandbox's proxy requests, and MCP's reading of resource URIs.
#
# The budget is a count of executions, not a duration: a duration-based -fuzztime
# can fail a clean run with "context deadline exceeded" when a starved worker is
# still busy at the deadline (a race in Go's fuzz coordinator, golang/go#75804,
# unfixed in Go 1.26). A count only makes a slow machine slower; 50,000 inputs take
# 3-10 s per target here. A slow input is not a failure either way: only an input
# that crashes, or hangs a worker for more than 10 s, is.
echo "test: fuzz"
for target in \
  ./internal/api:FuzzDecodeExecute \
  ./internal/agent:FuzzCodeScanner \
  ./internal/sandbox/harness:FuzzParse \
  ./internal/sandbox:FuzzParseCtl \
  ./internal/sandbox:FuzzResult \
  ./internal/egress:FuzzCheck \
  ./internal/mcp:FuzzParseFileURI \
  ./internal/llm:FuzzDecodeChatRequest \
  ./internal/llm:FuzzDecodeChatResponse \
  ./internal/llm:FuzzStream; do
  pkg=${target%%:*} name=${target##*:}
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "${FUZZTIME:-50000x}" -fuzzminimizetime 1s "$pkg"
done
