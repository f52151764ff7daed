import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** Where `node bin/build.js` puts the dashboard's static files (web/dist, beside src/). */
export const DASHBOARD_DIR = fileURLToPath(new URL('../../web/dist/', import.meta.url));

/**
 * The dashboard's pages may load scripts, styles and data from this server only:
 * no inline script, no other origin, no framing.
 */
const PAGE_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
};

/** Paths the API owns: an unknown one there answers the API's JSON 404, never the dashboard. */
const API_PATH = /^\/(?:v1|docs|host|health|ready|version|metrics)(?:\/|$)/;

export type PageFallback = (request: FastifyRequest, reply: FastifyReply) => FastifyReply | undefined;

export interface Dashboard {
  /** Whether web/dist was there to serve. */
  served: boolean;
  /** For the not-found handler: answers index.html to a browser asking for a page the SPA routes itself. */
  fallback: PageFallback | undefined;
}

/** Vite names every asset under assets/ by its content hash: a new build has new names. */
function cacheControl(file: string): string {
  return file.split(path.sep).includes('assets') ? 'public, max-age=31536000, immutable' : 'no-cache';
}

/**
 * Serves the built dashboard at `/`: its files by name, and index.html for any
 * other GET that asks for HTML outside the API's paths (the SPA's own routes,
 * e.g. /tasks/task_…). Without web/dist the server runs the API alone.
 */
export async function registerDashboard(app: FastifyInstance, root: string): Promise<Dashboard> {
  if (!existsSync(path.join(root, 'index.html'))) return { served: false, fallback: undefined };
  // One route per file found now (no wildcard): an unknown path stays the not-found handler's.
  await app.register(fastifyStatic, {
    root,
    prefix: '/',
    wildcard: false,
    index: ['index.html'],
    // Also applied to the fallback's sendFile.
    setHeaders: (reply, file) => {
      for (const [name, value] of Object.entries(PAGE_HEADERS)) reply.header(name, value);
      reply.header('cache-control', cacheControl(file));
    },
  });
  const fallback: PageFallback = (request, reply) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') return undefined;
    const urlPath = request.url.split('?')[0]!;
    if (API_PATH.test(urlPath)) return undefined;
    if (!request.headers.accept?.includes('text/html')) return undefined;
    return reply.sendFile('index.html');
  };
  return { served: true, fallback };
}
