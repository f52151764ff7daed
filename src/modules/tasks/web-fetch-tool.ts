import type { Timers } from '../../core/context.ts';
import type { OutboundGuard } from '../../core/outbound-guard.ts';
import type { LoopTool, ToolSource, ToolSourceContext } from './loop-tools.ts';
import { OUTPUT_LIMIT_CHARS } from './tool-definitions.ts';
import { cutOutput, type ToolOutcome } from './tools.ts';
import { hostList, WEB_FETCH_LIMITS, WebFetcher, type WebFetchLimits } from './web-fetch.ts';

// The web_fetch tool: offered to an agent whose definition names it, when its
// task may reach at least one host (the environment's network allow plus the
// agent's egress); a task that may reach none would only be told "no" each time.

/** The least a call may ask to be shown. */
const MIN_CHARS = 500;

const PARAMETERS = {
  type: 'object',
  properties: {
    url: { type: 'string', description: 'an http or https URL on one of the hosts this task may reach' },
    max_chars: {
      type: 'integer',
      minimum: MIN_CHARS,
      maximum: OUTPUT_LIMIT_CHARS,
      description: `show at most this many characters of the page (default and most: ${OUTPUT_LIMIT_CHARS})`,
    },
  },
  required: ['url'],
  additionalProperties: false,
};

const SIGNATURE = '{"url": "https://…", "max_chars"?: integer}';

/** The call's arguments, or what to send instead. */
function parseCall(raw: string): { url: string; maxChars: number } | { refused: string } {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    return {
      refused: `The arguments of web_fetch are not valid JSON (${(err as Error).message}). Send ${SIGNATURE}.`,
    };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return { refused: `The arguments of web_fetch must be a JSON object: ${SIGNATURE}.` };
  const { url, max_chars: maxChars, ...rest } = value as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) return { refused: `web_fetch takes no ${extra.join(', ')}: send ${SIGNATURE}.` };
  if (typeof url !== 'string' || url.length === 0 || url.length > 8000)
    return { refused: `web_fetch needs url, a string of 1 to 8000 characters: ${SIGNATURE}.` };
  if (
    maxChars !== undefined &&
    (!Number.isInteger(maxChars) ||
      (maxChars as number) < MIN_CHARS ||
      (maxChars as number) > OUTPUT_LIMIT_CHARS)
  )
    return { refused: `max_chars must be an integer from ${MIN_CHARS} to ${OUTPUT_LIMIT_CHARS}.` };
  return { url, maxChars: (maxChars as number | undefined) ?? OUTPUT_LIMIT_CHARS };
}

export class WebFetchSource implements ToolSource {
  readonly name = 'web_fetch';

  /** `guard`: web_fetch's own, with no exceptions in production (docs/security.md). */
  constructor(
    private readonly guard: OutboundGuard,
    private readonly timers: Timers,
    private readonly limits: WebFetchLimits = WEB_FETCH_LIMITS,
  ) {}

  async open(ctx: ToolSourceContext) {
    if (!ctx.agent.definition.tools.includes('web_fetch') || ctx.networkAllow.length === 0) return undefined;
    const fetcher = new WebFetcher(this.guard, this.timers, this.limits);
    const allow = [...ctx.networkAllow];
    const mib = this.limits.maxBytes / 1024 / 1024;
    const tool: LoopTool = {
      name: 'web_fetch',
      description:
        `Fetch a web page (GET, http or https) and read it as text: HTML reduced to its readable text, ` +
        `plain text and JSON as they are; other content types are refused. Only hosts this task may reach: ` +
        `${hostList(allow, 50)}; public addresses only; at most ${this.limits.maxRedirects} redirects, ` +
        `${mib} MiB and ${this.limits.timeoutMs / 1000} s. The answer starts with the page's title and final URL.`,
      parameters: PARAMETERS,
      async run(rawArguments, call): Promise<ToolOutcome> {
        const args = parseCall(rawArguments);
        if ('refused' in args) return { ok: false, output: args.refused, malformed: true };
        const page = await fetcher.fetch(args.url, allow, call.signal, call.secondsLeft() * 1000);
        if (!page.ok) return { ok: false, output: `web_fetch failed: ${page.message}` };
        const more =
          args.maxChars < OUTPUT_LIMIT_CHARS ? `; max_chars up to ${OUTPUT_LIMIT_CHARS} shows more` : '';
        const head = [
          ...(page.title ? [`Title: ${page.title}`] : []),
          `URL: ${page.url}`,
          `Content-Type: ${page.contentType}`,
        ].join('\n');
        return { ok: true, ...cutOutput(`${head}\n\n${page.text}`, 'head', more, args.maxChars) };
      },
    };
    return {
      tools: [tool],
      promptLines: [`web_fetch reads web pages on these hosts: ${hostList(allow, 50)}.`],
      close: () => fetcher.close(),
    };
  }
}
