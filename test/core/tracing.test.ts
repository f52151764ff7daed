import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { context, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import * as semconv from '@opentelemetry/semantic-conventions';
import * as incubating from '@opentelemetry/semantic-conventions/incubating';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { silentLog } from '../../src/core/context.ts';
import { ATTR, errorType, NOOP_TRACER, openTracer, type TracerLoader } from '../../src/core/tracing.ts';
import type { TracingConfig } from '../../src/tracing-config.ts';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp.ts';

// The tracer's pieces that need no server: its settings, that the SDK is
// loaded only when they ask for it, that two apps' tracers in one process
// keep apart, and that the attribute names are the conventions' own.

/** What loadConfig refuses `env` with (ConfigError's message lists every problem). */
const refusal = (env: NodeJS.ProcessEnv): string => {
  expect(() => loadConfig(env)).toThrow(ConfigError);
  try {
    loadConfig(env);
  } catch (err) {
    return (err as ConfigError).message;
  }
  return '';
};

describe('the settings', () => {
  it('are off unless an endpoint is set (or when OTEL_SDK_DISABLED says so)', () => {
    expect(loadConfig({}).tracing).toBeUndefined();
    expect(loadConfig({ OTEL_SERVICE_NAME: 'x', OTEL_EXPORTER_OTLP_HEADERS: 'a=b' }).tracing).toBeUndefined();
    expect(
      loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' }).tracing,
    ).toBeUndefined();
  });

  it('take the standard variables', () => {
    expect(
      loadConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'https://collector.example.com:4318/',
        OTEL_EXPORTER_OTLP_HEADERS: 'Authorization=Bearer%20abc,x-tenant = t1',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod',
      }).tracing,
    ).toEqual({
      tracesUrl: 'https://collector.example.com:4318/v1/traces',
      headers: { authorization: 'Bearer abc', 'x-tenant': 't1' },
      serviceName: 'paddock',
      resourceAttributes: { 'deployment.environment.name': 'prod' },
    });
    // The signal's own endpoint is the URL itself; the service's name is the operator's.
    expect(
      loadConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://ignored:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4318/custom/traces',
        OTEL_SERVICE_NAME: 'paddock-eu',
      }).tracing,
    ).toMatchObject({ tracesUrl: 'http://127.0.0.1:4318/custom/traces', serviceName: 'paddock-eu' });
  });

  it('stop the server when wrong, naming the variable but never a header’s value', () => {
    expect(refusal({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })).toContain(
      'OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL',
    );
    expect(
      refusal({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }),
    ).toContain('OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported');
    const message = refusal({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318',
      OTEL_EXPORTER_OTLP_HEADERS: 'api-key=%E0%A4%A-secret-9f1,no-equals-secret-9f1',
    });
    expect(message).toContain('OTEL_EXPORTER_OTLP_HEADERS: entry 1 must be key=value');
    expect(message).toContain('OTEL_EXPORTER_OTLP_HEADERS: entry 2 must be key=value');
    expect(message).not.toContain('secret-9f1');
  });
});

describe('openTracer', () => {
  const config: TracingConfig = {
    tracesUrl: 'http://127.0.0.1:1/v1/traces',
    headers: {},
    serviceName: 'paddock',
    resourceAttributes: {},
  };

  it('loads no SDK when tracing is off: the no-op tracer', async () => {
    let loads = 0;
    const load: TracerLoader = async () => {
      loads++;
      return import('../../src/core/tracing-otel.ts');
    };
    expect(await openTracer(undefined, { version: 'test', role: 'server' }, silentLog, load)).toBe(
      NOOP_TRACER,
    );
    expect(loads).toBe(0);
    const tracer = await openTracer(config, { version: 'test', role: 'server' }, silentLog, load);
    expect(loads).toBe(1);
    expect(tracer.enabled).toBe(true);
    await tracer.shutdown();
  });

  it('is the only way in: no other source file imports OpenTelemetry, and it only on demand', () => {
    const src = path.resolve('src');
    const files = readdirSync(src, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    const importers = files.filter((f) =>
      /from '@opentelemetry\/|import\('@opentelemetry\//.test(readFileSync(path.join(src, f), 'utf8')),
    );
    expect(importers).toEqual([path.join('core', 'tracing-otel.ts')]);
    const loaders = files.filter((f) => readFileSync(path.join(src, f), 'utf8').includes('tracing-otel.ts'));
    expect(loaders).toEqual([path.join('core', 'tracing.ts')]);
    expect(readFileSync(path.join(src, 'core', 'tracing.ts'), 'utf8')).toMatch(
      /import\('\.\/tracing-otel\.ts'\)/,
    );
  });
});

describe('two apps’ tracers in one process', () => {
  let otlp: OtlpReceiver;
  beforeAll(async () => {
    otlp = await startOtlpReceiver();
  });
  afterAll(() => otlp.close());

  it('keep their current spans apart and set nothing on OpenTelemetry’s global API', async () => {
    const open = (serviceName: string) =>
      openTracer(
        { tracesUrl: `${otlp.url}/v1/traces`, headers: {}, serviceName, resourceAttributes: {} },
        { version: 'test', role: 'server' },
        silentLog,
      );
    const a = await open('app-a');
    const b = await open('app-b');
    const outer = a.start('a.outer');
    await a.within(outer, async () => {
      await Promise.resolve();
      // The other app sees no current span; OpenTelemetry's global context is untouched.
      expect(b.traceparent()).toBeUndefined();
      expect(trace.getActiveSpan()).toBeUndefined();
      expect(context.active()).toBe(ROOT_CONTEXT);
      expect(a.traceparent()).toBe(outer.traceparent);
      const inner = a.start('a.inner');
      const later = a.bind(() => a.start('a.bound'));
      // Run from b's context: the bound callback still starts its span in a's.
      const other = b.start('b.root');
      b.within(other, () => later().end());
      other.end();
      inner.end();
    });
    outer.end();
    // A traceparent continues a trace across processes; null starts a new one even inside a span.
    const continued = b.start('b.continued', { parent: outer.traceparent });
    const fresh = a.within(outer, () => a.start('a.fresh', { parent: null }));
    continued.end();
    fresh.end();
    await Promise.all([a.shutdown(), b.shutdown()]);

    const byName = Object.fromEntries(otlp.spans.map((s) => [s.name, s]));
    const root = byName['a.outer']!;
    expect(root.parentSpanId).toBe('');
    expect(byName['a.inner']).toMatchObject({ traceId: root.traceId, parentSpanId: root.spanId });
    expect(byName['a.bound']).toMatchObject({ traceId: root.traceId, parentSpanId: root.spanId });
    expect(byName['b.root']?.parentSpanId).toBe('');
    expect(byName['b.continued']).toMatchObject({ traceId: root.traceId, parentSpanId: root.spanId });
    expect(byName['a.fresh']?.parentSpanId).toBe('');
    expect(byName['a.fresh']?.traceId).not.toBe(root.traceId);
    expect(byName['a.outer']?.resource['service.name']).toBe('app-a');
    expect(byName['b.root']?.resource['service.name']).toBe('app-b');
  });
});

describe('attribute names', () => {
  it('are the semantic conventions’ own', () => {
    const known = new Set(
      Object.entries({ ...semconv, ...incubating })
        .filter(([k, v]) => k.startsWith('ATTR_') && typeof v === 'string')
        .map(([, v]) => v),
    );
    for (const name of Object.values(ATTR)) expect(known.has(name), name).toBe(true);
  });

  it('error.type is a code or a class, never a message', () => {
    expect(errorType(Object.assign(new Error('the prompt was …'), { code: 'budget_exceeded' }))).toBe(
      'budget_exceeded',
    );
    expect(errorType(new TypeError('secret in here'))).toBe('TypeError');
    expect(errorType(Object.assign(new Error('x'), { code: 'has spaces: secret' }))).toBe('Error');
    expect(errorType('a string')).toBe('_OTHER');
  });
});
