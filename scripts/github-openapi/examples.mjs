// node examples.mjs OUT.json
// Writes, for each operation in operations.json, the documented success
// status and GitHub's own example body for it, keyed "METHOD /path/template",
// so the project's fake GitHub answers with what GitHub says it answers.
import { writeFileSync } from "node:fs";
import { deref, lookup, operations, successStatus } from "./spec.mjs";

const out = process.argv[2];
if (!out) {
  console.error("usage: node examples.mjs OUT.json");
  process.exit(2);
}

const result = {};
for (const entry of operations) {
  const key = `${entry.method} ${entry.path}`;
  const op = lookup(entry);
  const status = successStatus(op);
  const content = deref(op.responses[String(status)]).content;
  let body = null; // the success response has no body at all
  if (content) {
    const json = content["application/json"];
    if (!json) throw new Error(`${key}: the ${status} response has no application/json content`);
    // Most operations name their example "default"; create-deployment names
    // its only one "simple-example", so fall back to the first one listed.
    const examples = json.examples ?? {};
    const example = deref(examples.default ?? Object.values(examples)[0]);
    if (!example || !("value" in example)) {
      throw new Error(`${key}: the description has no example for its ${status} response`);
    }
    body = example.value;
  }
  result[key] = { status, body };
}

writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
console.log(`wrote ${Object.keys(result).length} examples to ${out}`);
