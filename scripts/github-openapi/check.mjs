// node check.mjs EXCHANGES.jsonl [--allow-unexercised]
// Checks every recorded exchange between the project's GitHub client and the
// fake GitHub against GitHub's OpenAPI description: that GitHub has the
// operation, that the query names, the request body and the response body are
// what it documents, and that every operation in operations.json was used.
import { readFileSync } from "node:fs";
import Ajv from "ajv";
import addFormats from "ajv-formats";
import { METHODS, deref, lookup, operations, spec } from "./spec.mjs";

const args = process.argv.slice(2);
const allowUnexercised = args.includes("--allow-unexercised");
const file = args.find((a) => !a.startsWith("--"));
if (!file) {
  console.error("usage: node check.mjs EXCHANGES.jsonl [--allow-unexercised]");
  process.exit(2);
}

// --- Finding the operation for a concrete path --------------------------------

const listed = new Set(operations.map((o) => `${o.method} ${o.path}`));

// One matcher per operation in the description. A {param} is one path segment,
// or several when GitHub marks it x-multi-segment (statuses/{sha},
// compare/{basehead}, contents/{path}). A segment may mix literal text and
// parameters: the deprecated /compare/{base}...{head} does.
const matchers = [];
for (const [template, item] of Object.entries(spec.paths)) {
  for (const method of METHODS) {
    const op = item[method];
    if (!op) continue;
    const params = [...(item.parameters ?? []), ...(op.parameters ?? [])].map(deref);
    const multi = new Set(params.filter((p) => p["x-multi-segment"]).map((p) => p.name));
    const source = template
      .split(/(\{[^}]+\})/)
      .map((part) => {
        const name = part.match(/^\{(.+)\}$/)?.[1];
        if (!name) return part.replace(/[.*+?^$()|[\]\\]/g, "\\$&");
        return multi.has(name) ? ".+" : "[^/]+";
      })
      .join("");
    matchers.push({
      key: `${method.toUpperCase()} ${template}`,
      method: method.toUpperCase(),
      template,
      op,
      params,
      regex: new RegExp(`^${source}$`),
      // Specificity: whole literal segments beat parameters. A mixed segment
      // such as {base}...{head} counts as a parameter, so it ties with
      // {basehead} for the same URL and the tie goes to the listed operation.
      literals: template.split("/").filter((s) => s && !s.includes("{")).length,
      listed: listed.has(`${method.toUpperCase()} ${template}`),
    });
  }
}

function findOperation(method, path) {
  const found = matchers.filter((m) => m.method === method && m.regex.test(path));
  found.sort((a, b) => b.literals - a.literals || b.listed - a.listed);
  return found[0];
}

// --- Schemas -----------------------------------------------------------------

// OpenAPI 3.0's `nullable: true` as plain JSON Schema. ajv 8 understands
// `nullable` only next to `type`, and even then an `enum` without null still
// rejects null; GitHub's description has both (`{nullable, allOf: [...]}` for
// nullable users, nullable enums for conclusions), so rewrite them all.
function nullable(schema) {
  if (Array.isArray(schema)) return schema.map(nullable);
  if (!schema || typeof schema !== "object") return schema;
  const out = {};
  for (const [k, v] of Object.entries(schema)) {
    if (["properties", "patternProperties", "definitions", "$defs"].includes(k)) {
      out[k] = Object.fromEntries(Object.entries(v).map(([name, s]) => [name, nullable(s)]));
    } else if (["items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"].includes(k)) {
      out[k] = nullable(v);
    } else if (k !== "nullable") {
      out[k] = v;
    }
  }
  if (schema.nullable !== true) return out;
  if (typeof out.type === "string") {
    out.type = [out.type, "null"];
    if (out.enum && !out.enum.includes(null)) out.enum = [...out.enum, null];
    return out;
  }
  return { anyOf: [out, { type: "null" }] };
}

const ajv = new Ajv({ strict: false, allErrors: true, logger: false });
addFormats(ajv);
// Query values arrive as strings; coerce them to the declared type.
const ajvQuery = new Ajv({ strict: false, allErrors: true, coerceTypes: true, logger: false });

// Compile only what an exchange needs, once: the description holds thousands.
const compiled = new Map();
function validator(cacheKey, schema, engine = ajv) {
  if (!compiled.has(cacheKey)) compiled.set(cacheKey, engine.compile(nullable(schema)));
  return compiled.get(cacheKey);
}

function errorsOf(validate, what) {
  const seen = new Set();
  for (const e of validate.errors ?? []) {
    let msg = `${e.instancePath || "/"} ${e.message}`;
    if (e.keyword === "enum") msg += ` ${JSON.stringify(e.params.allowedValues)}`;
    if (e.keyword === "additionalProperties") msg += ` (${e.params.additionalProperty})`;
    seen.add(msg);
  }
  const list = [...seen];
  const shown = list.slice(0, 4).join("; ") + (list.length > 4 ? `; +${list.length - 4} more` : "");
  return `${what}: ${shown}`;
}

// --- One exchange ------------------------------------------------------------

function check(ex, m) {
  const problems = [];
  const { op, params, key } = m;

  // Query parameter names and values.
  const declared = new Map(params.filter((p) => p.in === "query").map((p) => [p.name, p]));
  for (const [name, value] of new URLSearchParams(ex.query ?? "")) {
    const param = declared.get(name);
    if (!param) {
      problems.push(`query parameter ${name} is not declared (GitHub takes: ${[...declared.keys()].join(", ") || "none"})`);
      continue;
    }
    const schema = { type: "object", properties: { [name]: param.schema ?? {} } };
    const validate = validator(`${key} query ${name}`, schema, ajvQuery);
    if (!validate({ [name]: value })) problems.push(errorsOf(validate, `query ${name}=${value}`));
  }

  // Request body.
  const requestBody = deref(op.requestBody);
  const requestSchema = requestBody?.content?.["application/json"]?.schema;
  if (ex.request != null) {
    if (!requestSchema) {
      problems.push("request has a body, but GitHub documents none for this operation");
    } else {
      const validate = validator(`${key} request`, requestSchema);
      if (!validate(ex.request)) problems.push(errorsOf(validate, "request"));
    }
  } else if (requestBody?.required) {
    problems.push("request has no body, but GitHub requires one");
  }

  // Response body, against the status as documented (exactly, or as 2XX, or default).
  const status = String(ex.status);
  const documented = [status, `${status[0]}XX`, "default"].find((s) => op.responses[s]);
  if (!documented) {
    problems.push(`status ${status} is not documented (GitHub documents: ${Object.keys(op.responses).join(", ")})`);
    return problems;
  }
  const json = deref(op.responses[documented]).content?.["application/json"];
  if (json?.schema && ex.response == null) {
    // The redeliver operations document 202 with schema {type: object} and
    // the example null: an empty answer is what GitHub itself shows there.
    const examples = Object.values(json.examples ?? {}).map(deref);
    if (!examples.some((e) => e?.value === null)) {
      problems.push(`response has no body, but GitHub documents one for ${documented}`);
    }
  } else if (json?.schema) {
    const validate = validator(`${key} response ${documented}`, json.schema);
    if (!validate(ex.response)) problems.push(errorsOf(validate, "response"));
  }
  // A documented status without JSON content (409 on create-deployment) has
  // nothing to check the body against.
  return problems;
}

// --- The run -----------------------------------------------------------------

for (const entry of operations) lookup(entry); // operations.json itself must be right

const lines = readFileSync(file, "utf8").split("\n");
const exercised = new Set();
let passed = 0;
let failed = 0;
lines.forEach((line, i) => {
  if (!line.trim()) return;
  const where = `${file}:${i + 1}`;
  let ex;
  try {
    ex = JSON.parse(line);
  } catch (e) {
    console.log(`FAIL ${where}: not JSON: ${e.message}`);
    failed++;
    return;
  }
  const method = String(ex.method).toUpperCase();
  const m = findOperation(method, ex.path);
  let problems;
  let label;
  if (!m) {
    label = `${method} ${ex.path} ${ex.status}`;
    problems = [`GitHub has no operation ${method} ${ex.path}`];
  } else {
    label = `${m.key} ${ex.status}`;
    exercised.add(m.key);
    problems = check(ex, m);
    if (!m.listed) problems.push(`${m.key} (${m.op.operationId}) is not in operations.json`);
  }
  if (problems.length === 0) {
    console.log(`ok   ${label}`);
    passed++;
  } else {
    console.log(`FAIL ${label} (${where}): ${problems.join(" | ")}`);
    failed++;
  }
});

const unexercised = operations.map((o) => `${o.method} ${o.path}`).filter((k) => !exercised.has(k));
for (const k of unexercised) console.log(`not exercised: ${k}`);
const unexercisedFails = unexercised.length > 0 && !allowUnexercised;
console.log(
  `github-openapi: ${passed} exchanges ok, ${failed} failing, ` +
    `${operations.length - unexercised.length}/${operations.length} operations exercised` +
    (unexercised.length && allowUnexercised ? " (unexercised allowed)" : ""),
);
process.exit(failed > 0 || unexercisedFails ? 1 : 0);
