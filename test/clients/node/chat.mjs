// Drives the codeexec gateway with the official openai package and prints, as one JSON
// object, what a client reads: the answer and the code_execution entries, without
// (`plain`) and with (`stream`) streaming.
//
// Usage: CODEEXEC_URL=http://127.0.0.1:8080 node chat.mjs ["question"]
//
// The SDK sends the tool as given and returns tool_calls entries of an unknown type
// untouched, so plain JS reads them. Its types know no "code_execution" tool (plain JS
// here; TypeScript needs a cast), and two helpers do not fit it: parse() refuses
// tools other than function/custom, and the stream() helper's finalChatCompletion()
// throws "missing choices[0].tool_calls[0].function.name". Iterating
// create({stream: true}) works, as below.
import OpenAI from "openai";

const base = process.env.CODEEXEC_URL;
if (!base) {
  console.error("set CODEEXEC_URL to the gateway's address, e.g. http://127.0.0.1:8080");
  process.exit(2);
}
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "sk-test", maxRetries: 0, timeout: 30_000 });
const question = process.argv[2] ?? "Calculate the first 20 Fibonacci numbers";
const request = {
  model: "fake-model",
  messages: [{ role: "user", content: question }],
  tools: [{ type: "code_execution" }],
};

const plain = await client.chat.completions.create(request);
const message = plain.choices[0].message;
const entries = (message.tool_calls ?? [])
  .filter((c) => c.type === "code_execution")
  .map((c) => ({ code: c.code_execution.code, output: c.code_execution.output, status: c.code_execution.status }));

// Each execution streams as deltas of one tool call index: its code when it starts,
// then its output (and status) when it ends.
const stream = await client.chat.completions.create({ ...request, stream: true });
let content = "";
let finish = null;
const streamed = [];
for await (const chunk of stream) {
  const choice = chunk.choices[0];
  if (!choice) continue;
  content += choice.delta?.content ?? "";
  finish = choice.finish_reason ?? finish;
  for (const call of choice.delta?.tool_calls ?? []) {
    if (call.type !== "code_execution") continue;
    const e = (streamed[call.index] ??= { code: "", output: "", status: "" });
    e.code ||= call.code_execution.code ?? "";
    e.output += call.code_execution.output ?? "";
    e.status = call.code_execution.status ?? e.status;
  }
}

console.log(JSON.stringify({
  plain: { content: message.content, entries, finish: plain.choices[0].finish_reason },
  stream: { content, entries: streamed, finish },
}));
