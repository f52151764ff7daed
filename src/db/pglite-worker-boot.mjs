// Starts the embedded database's process: TypeScript runs through tsx, as in
// bin/paddock.js, then the worker module takes over.
import { register } from 'tsx/esm/api';

register();
await import('./pglite-worker.ts');
