// The drivers' protocol with tests/support/browser.py: one JSON request per line on stdin
// ({op, ...}), one JSON reply per line on stdout ({ok, result} or {ok: false, error}).
import readline from 'node:readline';

export async function serve(ops) {
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const request = JSON.parse(line);
    let reply;
    try {
      reply = { ok: true, result: (await ops[request.op](request)) ?? null };
    } catch (err) {
      reply = { ok: false, error: String(err && err.stack || err) };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
    if (request.op === 'quit') break;
  }
  process.exit(0);
}
