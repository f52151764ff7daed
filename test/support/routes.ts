import { expect } from 'vitest';
import type { App } from '../../src/http/types.ts';

/**
 * The routes the app really serves, from Fastify's own route tree. The tree
 * prints shared prefixes once, so a child's text continues its parent's:
 *   ├── /v1/auth/logout (POST)
 *   │   └── -all (POST)
 */
export function servedRoutes(app: App): Array<{ method: string; path: string }> {
  const lines = app.printRoutes({ commonPrefix: false }).split('\n');
  const stack: string[] = [];
  const out: Array<{ method: string; path: string }> = [];
  let nodes = 0;
  for (const line of lines) {
    if (!line.includes('── ')) continue;
    nodes += 1;
    const m = /^((?:[│ ] {3})*)[├└]── (.+?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) throw new Error(`cannot parse route line: ${line}`);
    const depth = m[1]!.length / 4;
    const path = (depth > 0 ? stack[depth - 1]! : '') + m[2];
    stack[depth] = path;
    stack.length = depth + 1;
    for (const method of m[3]?.split(', ') ?? []) out.push({ method, path });
  }
  expect(nodes).toBeGreaterThan(0);
  return out;
}

/** `/v1/teams/:id/members/:user_id` → `/v1/teams/{id}/members/{user_id}`; a wildcard (printed `files*`) → `files/{*}` */
export const openApiPath = (path: string) =>
  path.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\/?\*$/, '/{*}');
