// Drives /v1/files with the openai npm package: a file uploaded, a response whose
// container has it by file_ids, the image of a run fetched by its URL's file id
// with containers.files.content, and the file listed, read and deleted. Prints a
// JSON report.
import OpenAI, { toFile } from 'openai';

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const report = {};
try {
  const f = await client.files.create({ file: await toFile(Buffer.from('n\n1\n2\n'), 'data.csv'), purpose: 'user_data' });
  report.file = f;
  const r = await client.responses.create({ model: 'fake-model', input: 'Sum the column n of data.csv',
    tools: [{ type: 'code_interpreter', container: { type: 'auto', file_ids: [f.id], memory_limit: '1g' } }],
    include: ['code_interpreter_call.outputs'] });
  report.run = { containerId: r.output[0]?.container_id, logs: r.output[0]?.outputs?.[0]?.logs, outputText: r.output_text };

  const p = await client.responses.create({ model: 'fake-model', input: 'Plot it',
    tools: [{ type: 'code_interpreter', container: r.output[0]?.container_id }], include: ['code_interpreter_call.outputs'] });
  const call = p.output.find((o) => o.type === 'code_interpreter_call');
  const image = call?.outputs?.find((o) => o.type === 'image');
  const citation = p.output.find((o) => o.type === 'message')?.content?.[0]?.annotations?.[0];
  report.image = { url: image?.url, citation };
  // The URL names the container file: fetch it as the SDK does, by its id.
  const fileId = image?.url?.match(/\/files\/([^/]+)\/content$/)?.[1];
  const png = Buffer.from(await (await client.containers.files.content.retrieve(fileId, { container_id: call.container_id })).arrayBuffer());
  report.image.sdkBytes = png.length;
  report.image.sdkMagic = png.subarray(0, 4).toString('latin1');
  // And by the URL itself, with the key.
  const res = await fetch(image.url, { headers: { Authorization: `Bearer ${apiKey}` } });
  report.image.fetchStatus = res.status;
  report.image.fetchBytes = (await res.arrayBuffer()).byteLength;

  report.listed = (await client.files.list({ purpose: 'user_data' })).data.map((x) => x.id);
  report.retrieved = await client.files.retrieve(f.id);
  report.content = await (await client.files.content(f.id)).text();
  report.deleted = await client.files.delete(f.id);
  try {
    await client.files.retrieve(f.id);
  } catch (err) {
    report.afterDelete = { status: err.status, code: err.code };
  }
} catch (err) {
  report.failed = String(err?.stack ?? err);
}
console.log(JSON.stringify(report));
