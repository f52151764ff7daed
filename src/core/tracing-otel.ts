import { AsyncLocalStorage } from 'node:async_hooks';
import {
  defaultTextMapGetter,
  defaultTextMapSetter,
  type Context as OtelContext,
  type Span as OtelSpan,
  SpanKind as OtelSpanKind,
  ROOT_CONTEXT,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import { type ExportResult, ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { TracingConfig } from '../tracing-config.ts';
import type { Log } from './context.ts';
import type { Attributes, Resource, Span, SpanKind, SpanOptions, Tracer } from './tracing.ts';

// The OpenTelemetry SDK behind tracing.ts's Tracer, loaded only when tracing
// is configured. Nothing here touches OpenTelemetry's global API (no global
// tracer provider, context manager or propagator): each app has its own
// provider and exporter, and its own AsyncLocalStorage for the current span,
// so apps sharing a process (the tests) keep their traces apart.

const KINDS: Record<SpanKind, OtelSpanKind> = {
  internal: OtelSpanKind.INTERNAL,
  server: OtelSpanKind.SERVER,
  client: OtelSpanKind.CLIENT,
};

const propagator = new W3CTraceContextPropagator();

function defined(attributes: Attributes | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  if (attributes) for (const [k, v] of Object.entries(attributes)) if (v !== undefined) out[k] = v;
  return out;
}

function traceparentOf(context: OtelContext): string | undefined {
  const carrier: Record<string, string> = {};
  propagator.inject(context, carrier, defaultTextMapSetter);
  return carrier.traceparent;
}

class OtelSpanHandle implements Span {
  private ended = false;

  constructor(readonly otel: OtelSpan) {}

  set(attributes: Attributes): void {
    this.otel.setAttributes(defined(attributes));
  }

  event(name: string, attributes?: Attributes): void {
    this.otel.addEvent(name, defined(attributes));
  }

  fail(errorType: string): void {
    this.otel.setAttribute('error.type', errorType);
    this.otel.setStatus({ code: SpanStatusCode.ERROR });
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.otel.end();
  }

  get traceparent(): string | undefined {
    return traceparentOf(trace.setSpan(ROOT_CONTEXT, this.otel));
  }
}

/** Reports a failing collector once (not once per batch), and when it answers again. */
class LoggedExporter implements SpanExporter {
  private failing = false;

  constructor(
    private readonly inner: SpanExporter,
    private readonly log: Log,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code !== ExportResultCode.SUCCESS && !this.failing) {
        this.failing = true;
        this.log.warn(
          { err: result.error },
          'traces: the OTLP endpoint refused an export; its spans are dropped',
        );
      } else if (result.code === ExportResultCode.SUCCESS && this.failing) {
        this.failing = false;
        this.log.info({}, 'traces: the OTLP endpoint takes exports again');
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

class OpenTelemetryTracer implements Tracer {
  readonly enabled = true;
  private readonly current = new AsyncLocalStorage<OtelContext>();

  constructor(
    private readonly provider: BasicTracerProvider,
    private readonly tracer: ReturnType<BasicTracerProvider['getTracer']>,
  ) {}

  start(name: string, options: SpanOptions = {}): Span {
    const parent =
      options.parent === null
        ? ROOT_CONTEXT
        : options.parent !== undefined
          ? propagator.extract(ROOT_CONTEXT, { traceparent: options.parent }, defaultTextMapGetter)
          : (this.current.getStore() ?? ROOT_CONTEXT);
    const span = this.tracer.startSpan(
      name,
      { kind: KINDS[options.kind ?? 'internal'], attributes: defined(options.attributes) },
      parent,
    );
    return new OtelSpanHandle(span);
  }

  within<T>(span: Span, fn: () => T): T {
    if (!(span instanceof OtelSpanHandle)) return fn();
    return this.current.run(trace.setSpan(this.current.getStore() ?? ROOT_CONTEXT, span.otel), fn);
  }

  bind<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
    const context = this.current.getStore();
    return (...args) =>
      context ? this.current.run(context, () => fn(...args)) : this.current.exit(() => fn(...args));
  }

  traceparent(): string | undefined {
    const context = this.current.getStore();
    return context ? traceparentOf(context) : undefined;
  }

  flush(): Promise<void> {
    return this.provider.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.provider.shutdown();
  }
}

/**
 * A tracer exporting in batches (the SDK's defaults: every 5 s or 512 spans)
 * over OTLP/HTTP as JSON to the configured endpoint. The exporter's own
 * OTEL_EXPORTER_OTLP_TIMEOUT and OTEL_BSP_* settings apply as the SDK reads them.
 */
export function openTelemetryTracer(config: TracingConfig, resource: Resource, log: Log): Tracer {
  const exporter = new OTLPTraceExporter({ url: config.tracesUrl, headers: config.headers });
  const provider = new BasicTracerProvider({
    resource: defaultResource().merge(
      resourceFromAttributes({
        ...config.resourceAttributes,
        [ATTR_SERVICE_NAME]: config.serviceName,
        [ATTR_SERVICE_VERSION]: resource.version,
        'paddock.role': resource.role,
      }),
    ),
    spanProcessors: [new BatchSpanProcessor(new LoggedExporter(exporter, log))],
  });
  return new OpenTelemetryTracer(provider, provider.getTracer('paddock', resource.version));
}
