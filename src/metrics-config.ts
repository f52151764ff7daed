// The metrics endpoint's settings (docs/operations.md, "Metrics"), parsed by
// config.ts with the rest: a bad one stops the server at start, named.

export interface MetricsConfig {
  /** The bearer token GET /metrics asks for; undefined: it answers anyone who reaches it. */
  token: string | undefined;
  /** Serve /metrics on this address (a second, small server) and not on the main port. */
  listen: { host: string; port: number } | undefined;
}

/** Long enough that guessing it is no option, short enough to paste into a scrape config. */
const MIN_TOKEN_LENGTH = 16;

/** `host:port`, the host a name, an IPv4 address or an IPv6 one in brackets. */
const LISTEN = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/;

export function metricsConfig(env: NodeJS.ProcessEnv, problems: string[]): MetricsConfig {
  const token = env.PADDOCK_METRICS_TOKEN || undefined;
  if (token !== undefined && (token.length < MIN_TOKEN_LENGTH || /\s/.test(token))) {
    // Never the value: it is a credential.
    problems.push(
      `PADDOCK_METRICS_TOKEN must be at least ${MIN_TOKEN_LENGTH} characters without spaces (try: openssl rand -hex 32)`,
    );
  }
  const rawListen = env.PADDOCK_METRICS_LISTEN || undefined;
  let listen: MetricsConfig['listen'];
  if (rawListen !== undefined) {
    const match = LISTEN.exec(rawListen.trim());
    const port = match ? Number(match[3]) : -1;
    if (!match || port > 65_535) {
      problems.push(
        `PADDOCK_METRICS_LISTEN=${JSON.stringify(rawListen)} must be host:port, e.g. 127.0.0.1:9464 or [::1]:9464 (port 0: any free port)`,
      );
    } else {
      listen = { host: (match[1] ?? match[2])!, port };
    }
  }
  return { token, listen };
}
