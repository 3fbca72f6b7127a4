// What examples.mjs and check.mjs share: GitHub's OpenAPI description for
// api.github.com as @octokit/openapi ships it, and the project's operations.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

// The dereferenced variant: every $ref already inlined, so a schema handed to
// ajv is self-contained. It is ~70 MB; JSON.parse takes about a second, and we
// read it directly rather than through the package's index.js, which would
// parse all ten descriptions it ships.
export const SPEC_FILE = "@octokit/openapi/generated/api.github.com.deref.json";
export const spec = JSON.parse(readFileSync(require.resolve(SPEC_FILE), "utf8"));

export const operations = JSON.parse(
  readFileSync(new URL("./operations.json", import.meta.url), "utf8"),
);

export const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"];

// Resolve a local "#/components/..." $ref, should the variant leave any.
export function deref(node) {
  while (node && typeof node === "object" && typeof node.$ref === "string") {
    node = node.$ref
      .replace(/^#\//, "")
      .split("/")
      .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
      .reduce((o, key) => o?.[key], spec);
  }
  return node;
}

// The operation object for an operations.json entry, checked against the
// description so a typo there fails loudly instead of checking nothing.
export function lookup({ method, path, operationId }) {
  const op = spec.paths[path]?.[method.toLowerCase()];
  if (!op) throw new Error(`GitHub has no operation ${method} ${path}`);
  if (op.operationId !== operationId) {
    throw new Error(`${method} ${path} is ${op.operationId} in the description, not ${operationId}`);
  }
  return op;
}

// The documented success status: the lowest 2xx the operation lists
// (create-deployment lists 201 for a deployment and 202 for a merged branch).
export function successStatus(op) {
  const codes = Object.keys(op.responses).filter((c) => /^2\d\d$/.test(c)).sort();
  if (codes.length === 0) throw new Error(`${op.operationId} documents no 2xx response`);
  return Number(codes[0]);
}
