// Turns one HTML page into text off the server's event loop (web-fetch.ts
// starts it): a large or deeply nested page costs this thread's time and
// memory, which the server can stop, not the API's. Plain JavaScript beside
// its caller, so the same file runs under vitest, tsx and the built dist/.
import { parentPort, workerData } from 'node:worker_threads';
import { convert } from 'html-to-text';

parentPort.postMessage(convert(workerData.html, workerData.options));
