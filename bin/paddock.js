#!/usr/bin/env node
// The CLI runs the compiled server in dist/ (bin/build.js; `npm ci` builds it
// through the prepare script). When a source changed since that build, it is
// rebuilt first — well under a second — so a clone never runs stale code.
import { ensureBuilt } from './build.js';

const { main } = await import(await ensureBuilt());
await main(process.argv.slice(2));
