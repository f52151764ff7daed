// The gateway benchmark's floor: the least any proxy built like Paddock's can
// add. Fastify and undici as in Paddock, and nothing else: parse the JSON body,
// forward it to the provider, parse the JSON answer, reply. No auth, budget,
// rules, runs or steps. Plain JavaScript, so no loader runs in its process
// (Paddock too runs compiled). Takes the provider's URL as its argument, prints
// its own URL as one line on stdout; stops on SIGTERM, SIGINT or when stdin closes.
import Fastify from 'fastify';
import { Agent, request } from 'undici';

const upstream = process.argv[2];
if (!upstream) throw new Error('usage: floor-proxy.mjs <provider url>');
// The same pool settings as Paddock's upstream dispatcher (src/modules/gateway/upstream.ts).
const dispatcher = new Agent({ keepAliveTimeout: 30_000, connections: 256, pipelining: 1 });
const app = Fastify();

app.post('/v1/chat/completions', async (req, reply) => {
  const res = await request(`${upstream}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-bench-upstream' },
    body: JSON.stringify(req.body),
    dispatcher,
  });
  const answer = await res.body.json();
  // One header read from the answer, as Paddock reads usage for its headers and ledger.
  reply.code(res.statusCode).header('x-usage-total-tokens', String(answer?.usage?.total_tokens));
  return answer;
});

await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`http://127.0.0.1:${app.server.address().port}\n`);

// SIGTERM and SIGINT end it as they end any Node process. The parent holds our stdin open;
// when it dies without killing us, we go too.
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
