// Drives the codeexec gateway with the official openai package and prints what a
// client reads: the answer and the code_execution entries, without and with streaming.
// Usage: CODEEXEC_URL=http://127.0.0.1:8080 node chat.mjs "question"
import OpenAI from "openai";

const client = new OpenAI({ baseURL: `${process.env.CODEEXEC_URL}/v1`, apiKey: "sk-test" });
const question = process.argv[2] ?? "Calculate the first 20 Fibonacci numbers";
const request = {
  model: "fake-model",
  messages: [{ role: "user", content: question }],
  // The SDK's types know no "code_execution" tool; the gateway does.
  tools: [{ type: "code_execution" }],
};

const plain = await client.chat.completions.create(request);
const message = plain.choices[0].message;
const entries = (message.tool_calls ?? [])
  .filter((c) => c.type === "code_execution")
  .map((c) => ({ code: c.code_execution.code, output: c.code_execution.output }));

const stream = await client.chat.completions.create({ ...request, stream: true });
let content = "";
const streamed = [];
for await (const chunk of stream) {
  const delta = chunk.choices[0]?.delta ?? {};
  content += delta.content ?? "";
  for (const call of delta.tool_calls ?? []) {
    if (call.type !== "code_execution") continue;
    const e = (streamed[call.index] ??= { code: "", output: "" });
    e.code ||= call.code_execution.code ?? "";
    e.output += call.code_execution.output ?? "";
  }
}

console.log(JSON.stringify({
  plain: { content: message.content, entries, finish: plain.choices[0].finish_reason },
  stream: { content, entries: streamed },
}));
