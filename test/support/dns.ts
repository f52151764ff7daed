import type { HostResolver } from '../../src/core/outbound-guard.ts';

/**
 * DNS for the outbound-address guard: each name's answers in turn (the last
 * one for good), every question noted in `asked`; other names do not resolve.
 */
export function scriptedDns(table: Record<string, string[][]>): { resolve: HostResolver; asked: string[] } {
  const asked: string[] = [];
  const left = new Map(Object.entries(table).map(([name, answers]) => [name, [...answers]]));
  const resolve: HostResolver = async (name) => {
    asked.push(name);
    const answers = left.get(name);
    if (!answers) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    const next = answers.length > 1 ? answers.shift()! : answers[0]!;
    return next.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return { resolve, asked };
}
