// Drives POST /v1/responses with the OpenAI Agents SDK: an Agent with
// codeInterpreterTool, run through an OpenAI client whose base URL is codeexec,
// without and with streaming. Prints a JSON report.
import OpenAI from 'openai';
import { Agent, run, codeInterpreterTool, setDefaultOpenAIClient, setOpenAIAPI, setTracingDisabled } from '@openai/agents';

const [baseURL, apiKey] = process.argv.slice(2);
setDefaultOpenAIClient(new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 }));
setOpenAIAPI('responses');
setTracingDisabled(true);

const agent = new Agent({
  name: 'Calculator',
  instructions: 'Answer with the help of the code interpreter.',
  model: 'fake-model',
  tools: [codeInterpreterTool({ includeOutputs: true })],
});
const report = {};

function summary(result) {
  const calls = result.newItems
    .filter((it) => it.type === 'tool_call_item' && it.rawItem.type === 'hosted_tool_call')
    .map((it) => ({ name: it.rawItem.name, status: it.rawItem.status, code: it.rawItem.providerData?.code ?? it.rawItem.arguments,
      containerId: it.rawItem.providerData?.container_id, output: it.rawItem.output,
      logs: (it.rawItem.providerData?.outputs ?? []).filter((o) => o.type === 'logs').map((o) => o.logs).join('') }));
  return { finalOutput: result.finalOutput, items: result.newItems.map((it) => it.type), calls, lastResponseId: result.lastResponseId };
}

async function step(name, fn) {
  try {
    report[name] = await fn();
  } catch (err) {
    report[name] = { failed: String(err?.stack ?? err) };
  }
}

await step('run', async () => summary(await run(agent, 'Calculate the first 20 Fibonacci numbers')));
await step('stream', async () => {
  const result = await run(agent, 'Calculate the first 20 Fibonacci numbers', { stream: true });
  const events = [];
  for await (const ev of result) {
    if (ev.type === 'raw_model_stream_event') events.push(ev.data.type === 'model' ? ev.data.event.type : ev.data.type);
  }
  await result.completed;
  return { ...summary(result), events };
});

console.log(JSON.stringify(report));
