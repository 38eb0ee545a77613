// Drives codeexec's MCP server with the official TypeScript SDK and prints what it
// saw as one JSON object, for mcp_test.go to check:
//
//   node client.mjs stdio COMMAND [ARGS…]     a server the SDK starts (codeexec mcp)
//   node client.mjs http URL TOKEN            streamable HTTP with "Authorization: Bearer TOKEN"
//   node client.mjs connect URL [TOKEN]       only connect: reports the error of a refused one
//
// The server must run one execution at a time (--max-concurrent 1): a cancelled
// execution that went on running would hold the next call until its timeout.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [mode, target, ...rest] = process.argv.slice(2);

function transport() {
  if (mode === "stdio") {
    return new StdioClientTransport({ command: target, args: rest, stderr: "inherit" });
  }
  const headers = rest[0] ? { Authorization: `Bearer ${rest[0]}` } : {};
  return new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } });
}

const client = new Client({ name: "codeexec-mcp-test", version: "1.0.0" });
if (mode === "connect") {
  try {
    await client.connect(transport());
    const { tools } = await client.listTools();
    console.log(JSON.stringify({ connected: true, tools: tools.map((t) => t.name) }));
    await client.close();
  } catch (e) {
    console.log(JSON.stringify({ connected: false, error: String(e), code: e.code ?? null }));
  }
  process.exit(0);
}
await client.connect(transport());

const report = {};
const call = (name, args = {}, options = {}) =>
  client.callTool({ name, arguments: args }, undefined, { timeout: 120000, ...options });
const text = (res) => res.content.filter((c) => c.type === "text").map((c) => c.text).join("\n");

// Every step runs even when one fails: the report says which, and how.
async function step(name, fn) {
  try {
    report[name] = await fn();
  } catch (e) {
    report[name] = { failed: String(e && e.stack ? e.stack : e) };
  }
}

await step("tools", async () => (await client.listTools()).tools.map((t) => t.name).sort());

await step("run", async () => {
  const progress = [];
  // The lines come a while apart: the SDK drops a progress notification that reaches
  // it in the same read as the call's result, as the last one may.
  const res = await call("execute_python", { code: 'import time\nfor i in range(3):\n    print("line", i, flush=True)\n    time.sleep(0.5)\nsum(range(101))' },
    { onprogress: (p) => progress.push(p.message ?? "") });
  return { isError: res.isError ?? false, text: text(res), status: res.structuredContent.status,
    result: res.structuredContent.result, stdout: res.structuredContent.stdout, progress };
});

await step("figure", async () => {
  const res = await call("execute_python", { code: "import matplotlib.pyplot as plt\nplt.bar(['a', 'b'], [3, 5])" });
  const images = res.content.filter((c) => c.type === "image");
  return { types: res.content.map((c) => c.type), images: images.map((im) => ({ mimeType: im.mimeType,
    magic: Buffer.from(im.data, "base64").subarray(0, 8).toString("hex") })) };
});

await step("error", async () => {
  const res = await call("execute_python", { code: "def f():\n    return 1 / 0\nf()" });
  return { isError: res.isError ?? false, text: text(res), status: res.structuredContent.status,
    errorName: res.structuredContent.error?.name, traceback: res.structuredContent.error?.traceback };
});

let session;
await step("session", async () => {
  const made = await call("create_session");
  session = made.structuredContent.session_id;
  await call("execute_python", { code: "import numpy as np\nx = np.arange(10)", session_id: session });
  const second = await call("execute_python", { code: "int(x.sum())", session_id: session });
  const listed = await call("list_sessions");
  return { id: session, result: second.structuredContent.result, ended: second.structuredContent.session?.ended,
    listed: listed.structuredContent.sessions.map((s) => s.id) };
});

await step("files", async () => {
  const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const up = await call("upload_file", { session_id: session, path: "in/bytes.bin", content_base64: binary.toString("base64") });
  const run = await call("execute_python", { session_id: session,
    code: "data = open('in/bytes.bin', 'rb').read()\nopen('out.csv', 'w').write('n,sq\\n' + ''.join(f'{i},{i*i}\\n' for i in range(3)))\nlen(data)" });
  const links = run.content.filter((c) => c.type === "resource_link");
  const listed = await call("list_files", { session_id: session });
  const down = await call("download_file", { session_id: session, path: "in/bytes.bin" });
  const downText = await call("download_file", { session_id: session, path: "out.csv" });
  const read = links.length ? await client.readResource({ uri: links[0].uri }) : null;
  const blob = down.content[0].resource.blob;
  return {
    uploaded: up.structuredContent,
    runResult: run.structuredContent.result,
    links: links.map((l) => ({ uri: l.uri, name: l.name })),
    listed: listed.structuredContent.files.map((f) => `${f.path}:${f.size}`).sort(),
    binaryType: down.content[0].type,
    binaryRoundTrip: blob !== undefined && Buffer.from(blob, "base64").equals(binary),
    csvText: downText.content[0].resource.text,
    readText: read ? read.contents[0].text : null,
  };
});

await step("resources", async () => {
  const { resourceTemplates } = await client.listResourceTemplates();
  const { resources } = await client.listResources();
  return { templates: resourceTemplates.map((t) => t.uriTemplate).sort(), uris: resources.map((r) => r.uri) };
});

await step("prompt", async () => {
  const { prompts } = await client.listPrompts();
  const got = await client.getPrompt({ name: "analyse_csv", arguments: { path: "sales.csv" } });
  return { names: prompts.map((p) => p.name), text: got.messages[0].content.text };
});

// Cancel a call once its code is running (its first progress line says so), then
// run the next: with one execution at a time it runs only if the first stopped.
async function cancelled(args, next) {
  const ctl = new AbortController();
  let abortErr = null;
  try {
    await call("execute_python", args, {
      signal: ctl.signal,
      resetTimeoutOnProgress: true,
      onprogress: (p) => { if ((p.message ?? "").includes("started")) ctl.abort("the test cancels"); },
    });
  } catch (e) {
    abortErr = String(e);
  }
  const after = await call("execute_python", next);
  return { abortErr, after: after.structuredContent.result, afterStatus: after.structuredContent.status, afterText: text(after) };
}

const loop = "print('started', flush=True)\nwhile True:\n    pass";
await step("cancelOnce", () => cancelled({ code: loop, timeout_s: 300 }, { code: "'next'" }));
await step("cancelSession", async () => {
  await call("execute_python", { code: "kept = 41", session_id: session });
  return cancelled({ code: loop, session_id: session, timeout_s: 300 }, { code: "kept + 1", session_id: session });
});

await step("close", async () => {
  const closed = await call("close_session", { session_id: session });
  const again = await call("execute_python", { code: "1", session_id: session });
  return { closed: closed.structuredContent.closed, againIsError: again.isError ?? false, againText: text(again) };
});

console.log(JSON.stringify(report));
await client.close();
