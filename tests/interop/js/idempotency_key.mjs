// The execution idempotency key as the TypeScript reference computes it (reference spec §6.1),
// written out for the oracle test: key order by Array.prototype.sort() on Object.keys(), the sorted
// members copied into a fresh object, undefined dropped, JSON.stringify once at the end, SHA-256.
// Everything JavaScript itself does to that object (array-index keys enumerated first, the
// "__proto__" setter, Number printing) is what the Python side must reproduce.
//
// Input on stdin, one JSON document per line: {"tenant", "intent", "tool", "version", "args"}.
// Output on stdout, one JSON document per line: {"canonical", "key"}.
import { createHash } from "node:crypto";
import { createInterface } from "node:readline";

function canonicalize(value) {
  if (value === null || value === undefined) return value;
  if (Array.isArray(value)) return value.map(canonicalize);
  if (typeof value !== "object") return value;
  const copy = {};
  for (const name of Object.keys(value).sort()) {
    const member = canonicalize(value[name]);
    if (member !== undefined) copy[name] = member;
  }
  return copy;
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { tenant, intent, tool, version, args } = JSON.parse(line);
  const canonical = JSON.stringify(canonicalize(args));
  const key = createHash("sha256").update(`${tenant}:${intent}:${tool}:${canonical}:${version}`, "utf8").digest("hex");
  process.stdout.write(JSON.stringify({ canonical, key }) + "\n");
}
