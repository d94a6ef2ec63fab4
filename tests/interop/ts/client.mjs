// Calls fulfill's MCP gateway with the official TypeScript SDK, as any MCP client would.
//
// Input (JSON on stdin):
//   {"url": "http://127.0.0.1:PORT/mcp",
//    "calls": [{"label": "...", "token": "<bearer>", "name": "<tool>", "arguments": {...}}, ...]}
// Each call gets its own client (a service token is bound to one call): connect, tools/list (which
// also lets the SDK validate structured content against each tool's output schema), tools/call.
//
// Output (JSON on stdout): {"sdk_version": "...", "calls": [{"label", "tools", "isError", "text",
// "structuredContent"} | {"label", "thrown", "code"}]}; "thrown" is what the SDK raised instead.

import { readFileSync } from "node:fs";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

// The package's own manifest (its "exports" map sends "<sdk>/package.json" elsewhere).
const sdkManifest = new URL("./node_modules/@modelcontextprotocol/sdk/package.json", import.meta.url);
const sdkVersion = JSON.parse(readFileSync(sdkManifest, "utf8")).version;

async function callOnce(url, call) {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${call.token}` } },
  });
  const client = new Client({ name: "fulfill-interop", version: "1.0.0" });
  try {
    await client.connect(transport);
    const tools = (await client.listTools()).tools.map((tool) => tool.name).sort();
    const result = await client.callTool({ name: call.name, arguments: call.arguments });
    const text = (result.content ?? []).filter((block) => block.type === "text").map((block) => block.text);
    return {
      label: call.label,
      tools,
      isError: result.isError === true,
      text: text.join("\n"),
      structuredContent: result.structuredContent ?? null,
    };
  } catch (error) {
    return {
      label: call.label,
      thrown: `${error?.name ?? "Error"}: ${error?.message ?? String(error)}`,
      code: error?.code ?? null, // the HTTP status of a StreamableHTTPError, a JSON-RPC code of an McpError
    };
  } finally {
    await client.close().catch(() => {});
  }
}

const input = JSON.parse(readFileSync(0, "utf8"));
const calls = [];
for (const call of input.calls) {
  calls.push(await callOnce(input.url, call));
}
process.stdout.write(JSON.stringify({ sdk_version: sdkVersion, calls }) + "\n");
