// Package llm talks to OpenAI-compatible chat completion upstreams: the wire types,
// a client with timeouts and retries, SSE streaming, and routing between providers.
//
// The wire types are written by hand rather than taken from
// github.com/openai/openai-go: the gateway must forward request fields it does not
// know (new OpenAI parameters, provider extensions such as reasoning_content or
// chat_template_kwargs) to the upstream untouched, accept tool types OpenAI has no
// type for ({"type":"code_execution"}), and write tool calls of its own type in
// replies. The SDK's typed params drop or reject such fields, so every type here
// that crosses the wire keeps the object keys it does not model in an Extra map and
// writes them back on marshal (see extra.go). Client requests are therefore decoded
// leniently; only codeexec's own config is decoded with DisallowUnknownFields.
//
// Layers: types.go, content.go and response.go are pure data; client.go, retry.go,
// stream.go and sse.go move it over HTTP; provider.go, router.go and config.go
// choose which upstream gets a model.
package llm
