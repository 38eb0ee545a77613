// Drives a Responses request without the code tool through codeexec to an
// upstream with its own Responses API, with the openai npm package, with and
// without stream. Prints a JSON report.
import OpenAI from 'openai';

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const report = {};
try {
  const r = await client.responses.create({ model: 'fake-model', input: 'hi', service_tier: 'auto' });
  report.create = { id: r.id, outputText: r.output_text };
  const stream = await client.responses.create({ model: 'fake-model', input: 'hi', stream: true });
  const events = [];
  let text = '';
  let last;
  for await (const ev of stream) {
    events.push(ev.type);
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.type === 'response.completed') last = ev.response;
  }
  report.stream = { events, text, id: last?.id };
} catch (err) {
  report.failed = String(err?.stack ?? err);
}
console.log(JSON.stringify(report));
