// The peer: @octokit/webhooks, the library Probot uses, doing what shipline's intake does per
// delivery: verify the signature over the raw body, then receive (parse and dispatch to a
// handler). Prints one JSON line per body: microseconds per delivery.
//   node octokit.mjs SECRET FILE...
import { readFileSync } from "node:fs";
import { createHmac } from "node:crypto";
import { Webhooks } from "@octokit/webhooks";

const [secret, ...files] = process.argv.slice(2);
const webhooks = new Webhooks({ secret });
let received = 0;
webhooks.on("push", () => { received += 1; });

for (const file of files) {
  const body = readFileSync(file, "utf8");
  const signature = "sha256=" + createHmac("sha256", secret).update(body).digest("hex");
  const once = async (i) => {
    if (!(await webhooks.verify(body, signature))) throw new Error("signature refused");
    await webhooks.receive({ id: `d-${i}`, name: "push", payload: JSON.parse(body) });
  };
  // Warm up (JIT), then time enough deliveries for about two seconds.
  const warm = performance.now();
  let n = 0;
  while (performance.now() - warm < 1000) await once(n++);
  const per = (performance.now() - warm) / n;
  const rounds = Math.max(20, Math.ceil(2000 / per));
  const start = performance.now();
  for (let i = 0; i < rounds; i++) await once(i);
  const micros = ((performance.now() - start) * 1000) / rounds;
  console.log(JSON.stringify({ file, bytes: Buffer.byteLength(body), micros, rounds }));
}
if (received === 0) throw new Error("no delivery reached the handler");
