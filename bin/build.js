// Builds dist/ from src/ with esbuild: the server (dist/main.js and the chunks
// it imports as it needs them) and the embedded database's process
// (dist/pglite-worker.js). Dependencies stay in node_modules, unbundled.
//
// In dist/, each source module's `import.meta.url` is its source file's URL:
// files read beside a module (migrations, seccomp filters, package.json) come
// from src/, exactly as when the sources run under vitest or tsx, so nothing is
// copied and nothing goes stale. Code that must know it runs compiled tests
// `typeof PADDOCK_COMPILED` (defined here).
//
// `node bin/build.js` also makes dist/pgdata-<PGlite version>-<migrations>/,
// initdb and the migrations done once, which an empty data dir starts from
// (src/db/pglite-template.ts): seconds saved at the first start, and no
// initdb peak in the database's memory.
//
// It also builds the dashboard (web/) with Vite into web/dist/, which
// `paddock serve` serves at `/`, and prints its initial JavaScript's gzipped size.
//
// dist/build.json records each input's mtime and size (dist/web-build.json the
// dashboard's); ensureBuilt() (called by bin/paddock.js on every start, a few
// milliseconds) rebuilds when any of them changed, so a clone never runs code
// older than its src/ or serves a dashboard older than its web/.
//
//   node bin/build.js   build now (the prepare script: `npm ci` runs it)
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SRC = path.join(ROOT, 'src');
const DIST = path.join(ROOT, 'dist');
const STAMP = path.join(DIST, 'build.json');
/** Inputs besides the bundled sources whose change makes a new build. */
const ALSO = ['bin/build.js', 'tsconfig.json', 'package.json'];
const WEB = path.join(ROOT, 'web');
const WEB_DIST = path.join(WEB, 'dist');
const WEB_STAMP = path.join(DIST, 'web-build.json');
/** The dashboard's budget for the JavaScript its first page load needs, gzipped (issue 16). */
export const INITIAL_JS_LIMIT_BYTES = 300 * 1024;

/** Why dist/ cannot be run as it is, or undefined when it is current. */
export function staleReason() {
  return staleAgainst(STAMP, 'dist/');
}

/** Why web/dist/ is not the build of web/ as it is now, or undefined when it is. */
export function webStaleReason() {
  if (!existsSync(path.join(WEB_DIST, 'index.html'))) return 'web/dist/ has not been built';
  return staleAgainst(WEB_STAMP, 'web/dist/');
}

function staleAgainst(stamp, what) {
  let inputs;
  try {
    inputs = JSON.parse(readFileSync(stamp, 'utf8')).inputs;
  } catch {
    return `${what} has not been built`;
  }
  for (const [file, [mtimeMs, size]] of Object.entries(inputs)) {
    let stat;
    try {
      stat = statSync(path.join(ROOT, file));
    } catch {
      return `${file} is gone`;
    }
    if (stat.mtimeMs !== mtimeMs || stat.size !== size) return `${file} changed`;
  }
  return undefined;
}

/** Points each source module's import.meta.url at its file in src/ (see the top of this file). */
const sourceUrls = {
  name: 'source-import-meta-url',
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, async (args) => {
      if (!args.path.startsWith(SRC + path.sep)) return undefined;
      const text = await readFile(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return undefined;
      const fromDist = path.relative(DIST, args.path).split(path.sep).join('/');
      const url = `new URL(${JSON.stringify(fromDist)}, import.meta.url).href`;
      return { contents: text.replaceAll('import.meta.url', url), loader: 'ts' };
    });
  },
};

/** Writes a file whole or not at all: a server starting meanwhile reads the old one or the new one. */
function writeAtomically(file, contents) {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, contents);
  renameSync(tmp, file);
}

/** Builds dist/; returns how long it took, in ms. Throws with esbuild's messages when a source does not compile. */
export async function build() {
  const started = performance.now();
  const esbuild = await import('esbuild');
  await mkdir(DIST, { recursive: true });
  // esbuild's service process would otherwise live on in the server that called this.
  const result = await esbuild
    .build({
      absWorkingDir: ROOT,
      entryPoints: {
        main: 'src/main.ts',
        'pglite-worker': 'src/db/pglite-worker.ts',
        'pglite-template': 'src/db/pglite-template.ts',
      },
      outdir: DIST,
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      packages: 'external',
      keepNames: true,
      sourcemap: 'linked',
      chunkNames: 'chunk-[hash]',
      define: { PADDOCK_COMPILED: 'true' },
      plugins: [sourceUrls],
      metafile: true,
      write: false,
      logLevel: 'silent',
    })
    .finally(() => esbuild.stop());
  // Chunks first, entries next, the stamp last: whoever reads an entry finds its chunks.
  const files = [...result.outputFiles].sort(
    (a, b) =>
      Number(!path.basename(a.path).startsWith('chunk-')) -
      Number(!path.basename(b.path).startsWith('chunk-')),
  );
  for (const file of files) writeAtomically(file.path, file.contents);
  const written = new Set(files.map((f) => path.basename(f.path)));
  for (const name of readdirSync(DIST)) {
    if (name.startsWith('chunk-') && !written.has(name)) rmSync(path.join(DIST, name), { force: true });
  }
  const inputs = stampOf([
    ...Object.keys(result.metafile.inputs).filter((f) => f.startsWith('src/')),
    ...ALSO,
  ]);
  writeAtomically(STAMP, JSON.stringify({ esbuild: esbuild.version, inputs }, null, 1));
  return Math.round(performance.now() - started);
}

function stampOf(files) {
  const inputs = {};
  for (const file of files) {
    const stat = statSync(path.join(ROOT, file));
    inputs[file] = [stat.mtimeMs, stat.size];
  }
  return inputs;
}

/** What the dashboard's build reads: web/'s sources and config, the SDK's client, the lock file. */
function webInputs() {
  const files = [
    'web/index.html',
    'web/vite.config.ts',
    'web/tsconfig.json',
    'sdk/src/index.ts',
    'package-lock.json',
  ];
  for (const entry of readdirSync(path.join(WEB, 'src'), { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) files.push(path.relative(ROOT, path.join(entry.parentPath, entry.name)));
  }
  return files.map((f) => f.split(path.sep).join('/'));
}

/**
 * Builds web/ into web/dist/ with Vite; returns how long it took and the gzipped
 * size of the JavaScript the first page load fetches (index.html's module script
 * and the chunks it preloads; each page's own chunk loads when it is visited).
 */
export async function buildWeb() {
  const started = performance.now();
  let vite;
  try {
    vite = await import('vite');
  } catch {
    throw new Error('the dashboard needs its build tools (vite): run `npm ci` (it installs them)');
  }
  const inputs = stampOf(webInputs());
  // A production build whatever NODE_ENV the caller has (vitest sets "test"): Vite and
  // the React plugin read it to choose React's build and its JSX runtime.
  const nodeEnv = process.env.NODE_ENV;
  process.env.NODE_ENV = 'production';
  try {
    await vite.build({ root: WEB, configFile: path.join(WEB, 'vite.config.ts'), logLevel: 'warn' });
  } finally {
    if (nodeEnv === undefined) delete process.env.NODE_ENV;
    else process.env.NODE_ENV = nodeEnv;
  }
  writeAtomically(WEB_STAMP, JSON.stringify({ vite: vite.version, inputs }, null, 1));
  return { ms: Math.round(performance.now() - started), initialJsGzipBytes: initialJsGzipBytes() };
}

/** The gzipped bytes of the scripts web/dist/index.html loads before the first page shows. */
export function initialJsGzipBytes() {
  const html = readFileSync(path.join(WEB_DIST, 'index.html'), 'utf8');
  const scripts = [
    ...html.matchAll(/<script[^>]+src="([^"]+\.js)"/g),
    ...html.matchAll(/<link[^>]+rel="modulepreload"[^>]+href="([^"]+\.js)"/g),
  ].map((m) => m[1]);
  let bytes = 0;
  for (const src of new Set(scripts)) bytes += gzipSync(readFileSync(path.join(WEB_DIST, src))).length;
  return bytes;
}

export function describeWebBuild({ ms, initialJsGzipBytes: bytes }) {
  const kb = (bytes / 1024).toFixed(1);
  const over = bytes > INITIAL_JS_LIMIT_BYTES ? ' — OVER the 300 KB budget' : '';
  return `web/dist/ (the dashboard) built in ${ms} ms; initial JavaScript ${kb} KB gzipped${over}`;
}

/** The URL of dist/main.js, built first when missing or older than its sources. */
export async function ensureBuilt() {
  const reason = staleReason();
  if (reason) {
    process.stderr.write(`paddock: building dist/ (${reason})… `);
    try {
      process.stderr.write(`done in ${await build()} ms\n`);
    } catch (err) {
      process.stderr.write(`failed\n${describeBuildError(err)}\n`);
      process.exit(1);
    }
  }
  const webReason = webStaleReason();
  if (webReason) {
    process.stderr.write(`paddock: building web/dist/ (${webReason})… `);
    try {
      const built = await buildWeb();
      process.stderr.write(`done in ${built.ms} ms\n`);
    } catch (err) {
      // The API runs without its dashboard; the server's banner says how to build it.
      process.stderr.write(`failed; the server starts without the dashboard\n${describeBuildError(err)}\n`);
    }
  }
  return pathToFileURL(path.join(DIST, 'main.js')).href;
}

function describeBuildError(err) {
  const messages = err?.errors?.map(
    (e) => `${e.location ? `${e.location.file}:${e.location.line}:${e.location.column}: ` : ''}${e.text}`,
  );
  return messages?.length ? messages.join('\n') : String(err?.stack ?? err);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    console.log(`dist/ built in ${await build()} ms`);
    const { makeTemplate } = await import(pathToFileURL(path.join(DIST, 'pglite-template.js')).href);
    const made = await makeTemplate(path.join(SRC, 'db', 'migrations'));
    if (made !== undefined)
      console.log(`dist/pgdata-…/ (a migrated cluster for empty data dirs) made in ${made} ms`);
  } catch (err) {
    console.error(`could not build dist/ from src/:\n${describeBuildError(err)}`);
    process.exit(1);
  }
  try {
    console.log(describeWebBuild(await buildWeb()));
  } catch (err) {
    console.error(`could not build web/dist/ from web/:\n${describeBuildError(err)}`);
    process.exit(1);
  }
}
