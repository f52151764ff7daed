import type { TracingConfig } from '../tracing-config.ts';
import type { Log } from './context.ts';

// Traces at Paddock's own boundaries (docs/operations.md, Traces): what the
// instrumented code sees. With tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT)
// every app gets NOOP_TRACER and no OpenTelemetry module is loaded; on, each
// app gets its own tracer (tracing-otel.ts, imported on demand) with its own
// provider, exporter and async context, so several apps in one process (the
// tests) never see each other's spans and nothing is set on OpenTelemetry's
// global API.
//
// Spans carry ids, names, counts and codes. Never a prompt, a completion, a
// tool's arguments or output, a command, a secret, a token or a URL path (a
// playbook hook's path is its credential): callers pass only such values.

export type SpanKind = 'internal' | 'server' | 'client';
/** Undefined values are left out. */
export type Attributes = Record<string, string | number | boolean | undefined>;

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  /**
   * A W3C traceparent to continue (a job's, another process's); null: a new
   * trace; absent: a child of the span current in this async context.
   */
  parent?: string | null;
}

export interface Span {
  set(attributes: Attributes): void;
  /** Something that happened within the span (a failed attempt of a gateway call). */
  event(name: string, attributes?: Attributes): void;
  /** Marks the span failed with `error.type` (a code: never an error's message, which may quote content). */
  fail(errorType: string): void;
  /** Ends the span; a second call does nothing. */
  end(): void;
  /** The span as a W3C traceparent, to hand to a job or another process; undefined when off. */
  readonly traceparent: string | undefined;
}

export interface Tracer {
  readonly enabled: boolean;
  start(name: string, options?: SpanOptions): Span;
  /** Runs `fn` with `span` current: spans started inside it (across its awaits) are its children. */
  within<T>(span: Span, fn: () => T): T;
  /** `fn`, run later in the context current now (a callback another span's code calls). */
  bind<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R;
  /** The current span as a W3C traceparent (undefined: none, or tracing off). */
  traceparent(): string | undefined;
  /** Exports every ended span now. */
  flush(): Promise<void>;
  /** Flushes and stops exporting (the app's close). */
  shutdown(): Promise<void>;
}

const NOOP_SPAN: Span = {
  set() {},
  event() {},
  fail() {},
  end() {},
  traceparent: undefined,
};

/** Tracing off: every instrumentation point costs a call that does nothing. */
export const NOOP_TRACER: Tracer = {
  enabled: false,
  start: () => NOOP_SPAN,
  within: (_span, fn) => fn(),
  bind: (fn) => fn,
  traceparent: () => undefined,
  flush: async () => {},
  shutdown: async () => {},
};

/** What tracing-otel.ts exports; a parameter so a test can see it is never asked for when off. */
export type TracerLoader = () => Promise<{
  openTelemetryTracer(config: TracingConfig, resource: Resource, log: Log): Tracer;
}>;

/** Who exports: the resource attributes beside service.name. */
export interface Resource {
  version: string;
  /** `server` (paddock serve) or `host` (paddock host). */
  role: 'server' | 'host';
}

/** The app's tracer: NOOP_TRACER unless tracing is configured, and only then is the SDK imported. */
export async function openTracer(
  config: TracingConfig | undefined,
  resource: Resource,
  log: Log,
  load: TracerLoader = () => import('./tracing-otel.ts'),
): Promise<Tracer> {
  if (!config) return NOOP_TRACER;
  const { openTelemetryTracer } = await load();
  return openTelemetryTracer(config, resource, log);
}

/** Runs `fn` in a span of its own: failed with the error's type when it throws, ended either way. */
export async function inSpan<T>(
  tracer: Tracer,
  name: string,
  options: SpanOptions,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  if (!tracer.enabled) return fn(NOOP_SPAN);
  const span = tracer.start(name, options);
  try {
    return await tracer.within(span, () => fn(span));
  } catch (err) {
    span.fail(errorType(err));
    throw err;
  } finally {
    span.end();
  }
}

const CODE = /^[A-Za-z0-9_.-]{1,64}$/;

/** An error's `error.type`: its code (AppError, TaskEnd, a driver's or Node's), else its class; never its message. */
export function errorType(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown } | null | undefined;
  if (typeof e?.code === 'string' && CODE.test(e.code)) return e.code;
  if (typeof e?.name === 'string' && CODE.test(e.name)) return e.name;
  return '_OTHER';
}

/**
 * Attribute names, from OpenTelemetry's semantic conventions (HTTP, GenAI,
 * process). Copied rather than imported: the GenAI ones are still
 * "incubating", which the package asks instrumentation not to import at run
 * time, and the package is not loaded at all while tracing is off.
 * test/core/tracing.test.ts checks each against the package.
 */
export const ATTR = {
  httpRequestMethod: 'http.request.method',
  httpRoute: 'http.route',
  httpResponseStatusCode: 'http.response.status_code',
  urlScheme: 'url.scheme',
  errorType: 'error.type',
  processExitCode: 'process.exit.code',
  genAiOperationName: 'gen_ai.operation.name',
  genAiProviderName: 'gen_ai.provider.name',
  genAiSystem: 'gen_ai.system',
  genAiRequestModel: 'gen_ai.request.model',
  genAiRequestStream: 'gen_ai.request.stream',
  genAiResponseModel: 'gen_ai.response.model',
  genAiUsageInputTokens: 'gen_ai.usage.input_tokens',
  genAiUsageOutputTokens: 'gen_ai.usage.output_tokens',
  genAiAgentId: 'gen_ai.agent.id',
  genAiAgentName: 'gen_ai.agent.name',
  genAiToolName: 'gen_ai.tool.name',
  genAiToolCallId: 'gen_ai.tool.call.id',
  genAiToolType: 'gen_ai.tool.type',
} as const;
