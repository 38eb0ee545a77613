// Drives /v1/containers with the openai npm package: create, retrieve, list, a
// file uploaded, listed, read and deleted, a response that runs code in the
// container, and the container deleted. Prints a JSON report.
import OpenAI, { toFile } from 'openai';

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const report = {};
try {
  const c = await client.containers.create({ name: 'analysis', expires_after: { anchor: 'last_active_at', minutes: 20 } });
  report.created = c;
  report.retrieved = await client.containers.retrieve(c.id);
  report.listed = (await client.containers.list()).data.map((x) => x.id);
  const f = await client.containers.files.create(c.id, { file: await toFile(Buffer.from('n\n1\n2\n'), 'data.csv') });
  report.file = f;
  report.files = (await client.containers.files.list(c.id)).data.map((x) => x.path);
  report.fileRetrieved = await client.containers.files.retrieve(f.id, { container_id: c.id });
  report.content = await (await client.containers.files.content.retrieve(f.id, { container_id: c.id })).text();
  const r = await client.responses.create({ model: 'fake-model', input: 'Sum the column n of data.csv',
    tools: [{ type: 'code_interpreter', container: c.id }], include: ['code_interpreter_call.outputs'] });
  report.run = { containerId: r.output[0]?.container_id, logs: r.output[0]?.outputs?.[0]?.logs, outputText: r.output_text };
  await client.containers.files.delete(f.id, { container_id: c.id });
  report.filesAfterDelete = (await client.containers.files.list(c.id)).data.map((x) => x.path);
  await client.containers.delete(c.id);
  try {
    await client.containers.retrieve(c.id);
  } catch (err) {
    report.afterDelete = { status: err.status, code: err.code };
  }
} catch (err) {
  report.failed = String(err?.stack ?? err);
}
console.log(JSON.stringify(report));
