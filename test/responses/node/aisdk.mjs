// Drives POST /v1/responses with the Vercel AI SDK: generateText and streamText
// on openai.responses(model) with openai.tools.codeInterpreter(), and a follow-up
// turn that sends the first one's messages back (as item_reference items, since
// the responses are stored). Prints a JSON report.
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText } from 'ai';

const [baseURL, apiKey] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey });
const model = openai.responses('fake-model');
const tools = { code_interpreter: openai.tools.codeInterpreter() };
const report = {};

function summary(r, toolCalls, toolResults) {
  return {
    text: r.text,
    calls: toolCalls.map((c) => ({ name: c.toolName, providerExecuted: c.providerExecuted, code: c.input?.code ?? JSON.parse(c.input ?? '{}').code,
      containerId: c.input?.containerId ?? c.input?.container_id })),
    results: toolResults.map((r) => ({ name: r.toolName, outputs: r.output?.outputs ?? null })),
    finishReason: r.finishReason,
  };
}

async function step(name, fn) {
  try {
    report[name] = await fn();
  } catch (err) {
    report[name] = { failed: String(err?.stack ?? err) + (err?.responseBody ? '\nresponse body: ' + err.responseBody : '') };
  }
}

let first;
await step('generateText', async () => {
  first = await generateText({ model, tools, prompt: 'Calculate the first 20 Fibonacci numbers', maxRetries: 0 });
  return summary(first, first.toolCalls, first.toolResults);
});

await step('streamText', async () => {
  const r = streamText({ model, tools, prompt: 'Calculate the first 20 Fibonacci numbers', maxRetries: 0, onError: () => {} });
  const parts = [];
  for await (const p of r.fullStream) {
    if (p.type === 'error') throw p.error;
    parts.push(p.type);
  }
  return { ...summary({ text: await r.text, finishReason: await r.finishReason }, await r.toolCalls, await r.toolResults), parts: [...new Set(parts)] };
});

await step('followUp', async () => {
  const messages = [{ role: 'user', content: 'Calculate the first 20 Fibonacci numbers' }, ...first.response.messages, { role: 'user', content: 'Now their sum' }];
  const r = await generateText({ model, tools, messages, maxRetries: 0 });
  return summary(r, r.toolCalls, r.toolResults);
});

console.log(JSON.stringify(report));
