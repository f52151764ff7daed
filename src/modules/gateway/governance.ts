import { createHash } from 'node:crypto';
import type { PolicySpec } from '../policies/spec.ts';
import { matchesAny } from './glob.ts';
import type { WireFormat } from './provider-call.ts';
import { responsesToolNames } from './responses-passthrough.ts';

/** Tool names a request offers the model, in its wire format (Responses: hosted tools by type). */
export function toolNames(format: WireFormat, body: Record<string, unknown>): string[] {
  if (format === 'responses') return responsesToolNames(body);
  const tools = body.tools;
  if (!Array.isArray(tools)) return [];
  const names: string[] = [];
  for (const t of tools) {
    if (t === null || typeof t !== 'object') continue;
    const tool = t as Record<string, unknown>;
    const name =
      format === 'openai'
        ? ((tool.function as Record<string, unknown> | undefined)?.name ?? tool.name)
        : tool.name;
    if (typeof name === 'string') names.push(name);
  }
  return names;
}

export type ModelRuling = { ok: true } | { ok: false; message: string };

/** Rungate: blocked_models wins; a non-empty allowed_models list admits only its globs. */
export function checkModel(spec: PolicySpec, model: string): ModelRuling {
  if (matchesAny(spec.blocked_models, model))
    return { ok: false, message: `model ${model} is blocked by the policy` };
  const allowed = spec.allowed_models ?? [];
  if (allowed.length > 0 && !matchesAny(allowed, model)) {
    return { ok: false, message: `model ${model} is not in the policy's allowed_models` };
  }
  return { ok: true };
}

export interface ToolRuling {
  blocked: Array<{ tool: string; reason: string }>;
  needApproval: string[];
}

export function checkTools(spec: PolicySpec, tools: string[]): ToolRuling {
  const blocked: ToolRuling['blocked'] = [];
  const needApproval: string[] = [];
  const allowed = spec.allowed_tools ?? [];
  for (const tool of tools) {
    if (matchesAny(spec.blocked_tools, tool)) blocked.push({ tool, reason: 'blocked_tools' });
    else if (allowed.length > 0 && !matchesAny(allowed, tool))
      blocked.push({ tool, reason: 'not in allowed_tools' });
    else if (matchesAny(spec.require_approval, tool)) needApproval.push(tool);
  }
  return { blocked, needApproval };
}

function stable(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stable);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value as object)
        .sort()
        .map((k) => [k, stable((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

/** Identifies a request for approvals: the replay must be the request that was approved. */
export function requestHash(body: Record<string, unknown>): string {
  return createHash('sha256')
    .update(JSON.stringify(stable(body)))
    .digest('hex');
}
