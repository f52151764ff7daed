// The gateway benchmark's provider: the tests' mock LLM in a process of its own,
// so its event loop competes with neither Paddock's nor the load generator's.
// Prints its URL as one line on stdout; stops on SIGTERM, SIGINT or when stdin closes.
import { startMockLlm } from '../test/support/mock-llm.ts';

const mock = await startMockLlm({ record: false });
process.stdout.write(`${mock.url}\n`);

const stop = () => {
  void mock.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The parent holds our stdin open; when it dies without killing us, we go too.
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
