#!/usr/bin/env node
// The CLI runs the TypeScript sources directly through tsx's loader, so a fresh
// clone needs no build step between `npm ci` and `paddock serve`.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/main.ts');
await main(process.argv.slice(2));
