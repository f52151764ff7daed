import type { SandboxPrices } from '../../config.ts';
import { ValidationError } from '../../core/errors.ts';
import type { AgentId, RunId, TeamId } from '../../core/ids.ts';
import { NO_TOKENS, type SandboxFacts, type StepRecord } from './recording.ts';
import { MICROS_PER_USD } from './views.ts';

// A task's capsule running time as money: priced per vCPU-second and per
// GiB-second of memory (PADDOCK_SANDBOX_USD_PER_VCPU_SEC / _PER_GB_SEC), and
// charged to the task's run as a step of type sandbox with a ledger entry of
// kind sandbox, so a run's cost is its model cost plus its sandbox cost.

export { DEFAULT_SANDBOX_PRICES, type SandboxPrices } from '../../config.ts';

/** One interval of a capsule's running time, as the task runner reports it. */
export interface SandboxUsageInput {
  teamId: TeamId;
  runId: RunId | string;
  agentId: AgentId | string;
  capsuleId: string;
  /** The interval's length: a call charges only the time since the last call for this capsule. */
  seconds: number;
  vcpus: number;
  memoryMb: number;
  /** When the interval ended (default: now). */
  at?: Date;
}

export interface SandboxCharge {
  costMicros: number;
  ledgerEntryId: string;
  stepId: string;
}

const MB_PER_GB = 1024;
/** A day per interval, 1024 vCPUs, 16 TiB: far past any capsule, low enough that the cost stays an exact integer. */
const MAX_SECONDS = 86_400;
const MAX_VCPUS = 1024;
const MAX_MEMORY_MB = 16 * 1024 * 1024;

/** Refuses what cannot be a capsule's running time (400 validation_failed, naming the fields). */
export function checkSandboxUsage(input: SandboxUsageInput): void {
  const fields: Record<string, string> = {};
  const within = (v: number, max: number) => Number.isFinite(v) && v >= 0 && v <= max;
  if (!within(input.seconds, MAX_SECONDS))
    fields.seconds = `must be a number of seconds from 0 to ${MAX_SECONDS}`;
  if (!within(input.vcpus, MAX_VCPUS) || input.vcpus === 0)
    fields.vcpus = `must be more than 0 and at most ${MAX_VCPUS}`;
  if (!Number.isInteger(input.memoryMb) || !within(input.memoryMb, MAX_MEMORY_MB))
    fields.memory_mb = `must be a whole number of MB from 0 to ${MAX_MEMORY_MB}`;
  if (input.at !== undefined && !Number.isFinite(input.at.getTime())) fields.at = 'must be a valid time';
  if (input.capsuleId.length === 0 || input.capsuleId.length > 100)
    fields.capsule_id = 'must be 1 to 100 characters';
  if (Object.keys(fields).length > 0) throw new ValidationError('invalid sandbox usage', fields);
}

/**
 * What an interval costs, in micro-USD, rounded once at the end:
 * seconds × (vCPUs × price per vCPU-second + GiB × price per GiB-second).
 * Each interval is rounded on its own, so a capsule charged in many short
 * intervals may differ from one long one by under half a micro-dollar each.
 */
export function sandboxCostMicros(
  prices: SandboxPrices,
  usage: Pick<SandboxUsageInput, 'seconds' | 'vcpus' | 'memoryMb'>,
): number {
  const usdPerSec = usage.vcpus * prices.usdPerVcpuSec + (usage.memoryMb / MB_PER_GB) * prices.usdPerGbSec;
  return Math.round(usage.seconds * usdPerSec * MICROS_PER_USD);
}

/** The step an interval is recorded as (no tokens, no provider; the facts go to its ledger entry). */
export function sandboxStep(input: SandboxUsageInput, costMicros: number, at: Date): StepRecord {
  const sandbox: SandboxFacts = {
    capsuleId: input.capsuleId,
    seconds: input.seconds,
    vcpus: input.vcpus,
    memoryMb: input.memoryMb,
  };
  return {
    type: 'sandbox',
    status: 'success',
    name: input.capsuleId,
    provider: null,
    model: null,
    usage: NO_TOKENS,
    costMicros,
    // Written even when free: the ledger shows the time either way.
    ledger: true,
    sandbox,
    at,
  };
}
