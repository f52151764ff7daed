// OpenTelemetry's standard variables for trace export (docs/operations.md,
// Traces), parsed by config.ts with the rest. Unset, tracing is off and no
// SDK is loaded.

/** Where and how spans are exported: OTLP over HTTP (JSON). */
export interface TracingConfig {
  /** The full URL spans are POSTed to (…/v1/traces). */
  tracesUrl: string;
  /** Sent with every export (a collector's API key): never logged, never shown in a problem. */
  headers: Record<string, string>;
  /** The resource's service.name. */
  serviceName: string;
  /** More resource attributes (OTEL_RESOURCE_ATTRIBUTES: deployment.environment.name=prod, …). */
  resourceAttributes: Record<string, string>;
}

const URL_SHAPE = /^https?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/;

/**
 * OTEL_EXPORTER_OTLP_ENDPOINT is a base URL (the exporter appends v1/traces);
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, when set, is the traces URL itself.
 * OTEL_SDK_DISABLED=true turns tracing off whatever else is set.
 */
export function tracingConfig(env: NodeJS.ProcessEnv, problems: string[]): TracingConfig | undefined {
  if ((env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() === 'true') return undefined;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || undefined;
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || undefined;
  if (base === undefined && traces === undefined) return undefined;
  const name = traces !== undefined ? 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' : 'OTEL_EXPORTER_OTLP_ENDPOINT';
  const given = (traces ?? base)!;
  // The endpoint is the operator's, not a user's: it does not go through the outbound guard.
  if (!URL_SHAPE.test(given) || !validUrl(given))
    problems.push(`${name} must be an http:// or https:// URL without a query, e.g. http://127.0.0.1:4318`);
  const tracesUrl = traces ?? `${given.replace(/\/+$/, '')}/v1/traces`;
  const protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL || '').trim();
  if (protocol === 'grpc')
    problems.push(
      'OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported: Paddock exports OTLP over HTTP (http/json); point the endpoint at the collector’s HTTP port (4318)',
    );
  const serviceName = env.OTEL_SERVICE_NAME?.trim() || 'paddock';
  const headers: Record<string, string> = {};
  for (const name of ['OTEL_EXPORTER_OTLP_HEADERS', 'OTEL_EXPORTER_OTLP_TRACES_HEADERS'] as const)
    for (const [key, value] of keyValues(env, name, HEADER_NAME, problems))
      headers[key.toLowerCase()] = value;
  const resourceAttributes = Object.fromEntries(
    keyValues(env, 'OTEL_RESOURCE_ATTRIBUTES', ATTRIBUTE_NAME, problems),
  );
  return { tracesUrl, headers, serviceName, resourceAttributes };
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const ATTRIBUTE_NAME = /^[A-Za-z0-9_.-]+$/;

/** `key=value,key2=value2`, values percent-encoded (the OpenTelemetry specification's form). */
function keyValues(
  env: NodeJS.ProcessEnv,
  name: string,
  keyShape: RegExp,
  problems: string[],
): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const [i, pair] of (env[name] ?? '').split(',').entries()) {
    if (pair.trim() === '') continue;
    const at = pair.indexOf('=');
    const key = at > 0 ? pair.slice(0, at).trim() : '';
    let value: string | undefined;
    try {
      value = decodeURIComponent(pair.slice(at + 1).trim());
    } catch {
      value = undefined;
    }
    // Never the value in the problem: a header's is usually a collector's API key.
    if (!keyShape.test(key) || value === undefined || /[\r\n]/.test(value)) {
      problems.push(`${name}: entry ${i + 1} must be key=value (the value percent-encoded)`);
      continue;
    }
    pairs.push([key, value]);
  }
  return pairs;
}

function validUrl(raw: string): boolean {
  try {
    new URL(raw);
    return true;
  } catch {
    return false;
  }
}
