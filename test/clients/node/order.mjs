// Streams one answer from the codeexec gateway with the official openai package and
// prints each event as one JSON line the moment the SDK yields it: {"content"},
// {"run": "running" | status, "container_id", "stdout"}, {"finish"}. The Go test
// reading these lines holds the model and the code back between them, so that the
// order proves the SDK receives the stream as it is written.
//
// Usage: CODEEXEC_URL=http://127.0.0.1:8080 node order.mjs ["question"]
import OpenAI from "openai";

const base = process.env.CODEEXEC_URL;
if (!base) {
  console.error("set CODEEXEC_URL to the gateway's address, e.g. http://127.0.0.1:8080");
  process.exit(2);
}
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "sk-test", maxRetries: 0, timeout: 60_000 });
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");

const stream = await client.chat.completions.create({
  model: "fake-model",
  messages: [{ role: "user", content: process.argv[2] ?? "Run it" }],
  tools: [{ type: "code_execution" }],
  stream: true,
});
for await (const chunk of stream) {
  const choice = chunk.choices[0];
  if (!choice) continue;
  if (choice.delta?.content) emit({ content: choice.delta.content });
  for (const call of choice.delta?.tool_calls ?? []) {
    if (call.type !== "code_execution") continue;
    const e = call.code_execution;
    emit({ run: e.status, container_id: e.container_id, stdout: e.stdout ?? "" });
  }
  if (choice.finish_reason) emit({ finish: choice.finish_reason, container: chunk.container?.id ?? "" });
}
