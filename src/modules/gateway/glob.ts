const cache = new Map<string, RegExp>();

/** Model and tool globs: `*` any run of characters, `?` one; case-sensitive, whole string. */
export function globMatch(pattern: string, value: string): boolean {
  if (!pattern.includes('*') && !pattern.includes('?')) return pattern === value;
  let re = cache.get(pattern);
  if (!re) {
    const source = pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.');
    re = new RegExp(`^${source}$`);
    if (cache.size < 10_000) cache.set(pattern, re);
  }
  return re.test(value);
}

export function matchesAny(patterns: readonly string[] | null | undefined, value: string): boolean {
  return (patterns ?? []).some((p) => globMatch(p, value));
}
