// Drives POST /v1/responses with the openai npm package: responses.create without
// and with stream, then a follow-up by previous_response_id. Prints a JSON report;
// a step that throws records its error and the others still run.
import OpenAI from 'openai';

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const tools = [{ type: 'code_interpreter', container: { type: 'auto' } }];
const include = ['code_interpreter_call.outputs'];
const report = {};

function calls(output) {
  return output.filter((it) => it.type === 'code_interpreter_call').map((it) => ({
    id: it.id, code: it.code, containerId: it.container_id, status: it.status,
    logs: (it.outputs ?? []).filter((o) => o.type === 'logs').map((o) => o.logs).join(''),
  }));
}

async function step(name, fn) {
  try {
    report[name] = await fn();
  } catch (err) {
    report[name] = { failed: String(err?.stack ?? err) };
  }
}

let first;
await step('create', async () => {
  first = await client.responses.create({ model: 'fake-model', tools, include, input: 'Calculate the first 20 Fibonacci numbers' });
  return { id: first.id, status: first.status, outputText: first.output_text, types: first.output.map((it) => it.type), calls: calls(first.output) };
});

await step('stream', async () => {
  const stream = await client.responses.create({ model: 'fake-model', tools, include, input: 'Calculate the first 20 Fibonacci numbers', stream: true });
  const events = [];
  let code = '', text = '', final, seq = [];
  for await (const ev of stream) {
    events.push(ev.type);
    seq.push(ev.sequence_number);
    if (ev.type === 'response.code_interpreter_call_code.delta') code += ev.delta;
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.type === 'response.completed') final = ev.response;
  }
  const ordered = seq.every((n, i) => n === i);
  return { events, code, text, ordered, status: final?.status, outputText: final?.output_text, calls: calls(final?.output ?? []) };
});

// The helper stream(): the SDK's own accumulation of the events into a response.
await step('helperStream', async () => {
  const stream = client.responses.stream({ model: 'fake-model', tools, include, input: 'Calculate the first 20 Fibonacci numbers' });
  const final = await stream.finalResponse();
  return { status: final.status, outputText: final.output_text, calls: calls(final.output) };
});

await step('previous', async () => {
  const next = await client.responses.create({ model: 'fake-model', tools, include, previous_response_id: first.id, input: 'Now their sum' });
  return { previous: next.previous_response_id, outputText: next.output_text, calls: calls(next.output) };
});

await step('notFound', async () => {
  try {
    await client.responses.create({ model: 'fake-model', previous_response_id: 'resp_nope', input: 'x' });
    return { status: 0 };
  } catch (err) {
    return { status: err.status, code: err.code };
  }
});

console.log(JSON.stringify(report));
