import { jsonNestingExceeds, MAX_JSON_DEPTH, unsafeTextFields } from '../../core/input-guard.ts';

/**
 * Run controls ride as `x-paddock-*` headers or as top-level body fields of
 * the same name (Rungate). Headers win; the body fields are removed before
 * the request is forwarded, so the provider never sees them.
 */
export interface RunControls {
  runId: string | undefined;
  runPolicy: string | undefined;
  runName: string | undefined;
  runMetadata: Record<string, unknown> | undefined;
  newRun: boolean;
  approvalId: string | undefined;
}

const NAMES = {
  runId: 'x-paddock-run-id',
  runPolicy: 'x-paddock-run-policy',
  runName: 'x-paddock-run-name',
  runMetadata: 'x-paddock-run-metadata',
  newRun: 'x-paddock-new-run',
  approvalId: 'x-paddock-approval-id',
} as const;

export class ControlError extends Error {}

function text(v: unknown): string | undefined {
  if (typeof v === 'string' && v.trim() !== '') return v.trim();
  if (typeof v === 'number') return String(v);
  return undefined;
}

function metadata(v: unknown): Record<string, unknown> | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  let parsed = v;
  if (typeof v === 'string') {
    // JSON inside a header (or a body string) passed no body check: the same rules apply here.
    if (jsonNestingExceeds(v, MAX_JSON_DEPTH)) {
      throw new ControlError(`${NAMES.runMetadata} nests deeper than ${MAX_JSON_DEPTH} levels`);
    }
    try {
      parsed = JSON.parse(v);
    } catch {
      throw new ControlError(`${NAMES.runMetadata} must be a JSON object`);
    }
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ControlError(`${NAMES.runMetadata} must be a JSON object`);
  }
  const unsafe = Object.entries(unsafeTextFields(parsed, NAMES.runMetadata));
  if (unsafe.length > 0) {
    throw new ControlError(`${NAMES.runMetadata}: ${unsafe.map(([f, m]) => `${f} ${m}`).join('; ')}`);
  }
  return parsed as Record<string, unknown>;
}

/** Reads the controls and strips their body fields (mutates `body`). */
export function takeControls(
  headers: Record<string, string | string[] | undefined>,
  body: Record<string, unknown>,
): RunControls {
  const pick = (name: string): unknown => {
    const h = headers[name];
    const fromHeader = Array.isArray(h) ? h[0] : h;
    const fromBody = body[name];
    delete body[name];
    return fromHeader ?? fromBody;
  };
  const newRun = pick(NAMES.newRun);
  return {
    runId: text(pick(NAMES.runId)),
    runPolicy: text(pick(NAMES.runPolicy)),
    runName: text(pick(NAMES.runName))?.slice(0, 255),
    runMetadata: metadata(pick(NAMES.runMetadata)),
    newRun: newRun === true || (typeof newRun === 'string' && newRun.toLowerCase() === 'true'),
    approvalId: text(pick(NAMES.approvalId)),
  };
}
