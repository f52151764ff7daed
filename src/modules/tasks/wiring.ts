import { Readable } from 'node:stream';
import { AppError, NotFoundError } from '../../core/errors.ts';
import { isId } from '../../core/ids.ts';
import { boundKeyIds } from '../agents/repo.ts';
import type { AgentsService } from '../agents/service.ts';
import type { ApprovalsService } from '../approvals/service.ts';
import type { EnvironmentsService } from '../environments/service.ts';
import type { FilesService } from '../files/service.ts';
import { checkModel } from '../gateway/governance.ts';
import { resolveModelAlias } from '../gateway/model-aliases.ts';
import type { GatewayService } from '../gateway/service.ts';
import { systemPrincipal } from '../identity/principal.ts';
import type { TeamsService } from '../identity/teams-service.ts';
import type { PoliciesService } from '../policies/service.ts';
import type { ProvidersService } from '../providers/service.ts';
import type { RunsService } from '../runs/service.ts';
import type { CapsulesService } from '../sandboxes/service.ts';
import type { SecretsService } from '../secrets/service.ts';
import type { TaskPorts } from './ports.ts';
import { toolCapsule } from './tool-capsule.ts';

export interface TaskModules {
  agents: AgentsService;
  teams: TeamsService;
  policies: PoliciesService;
  providers: ProvidersService;
  environments: EnvironmentsService;
  files: FilesService;
  secrets: SecretsService;
  gateway: GatewayService;
  runs: RunsService;
  capsules: CapsulesService;
  approvals: ApprovalsService;
}

function capsuleId(id: string) {
  if (!isId(id, 'cap')) throw new NotFoundError('capsule', id);
  return id;
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/**
 * The tasks module's view of the others: each port calls one service
 * method, as the team's system principal where a principal is asked for.
 */
export function taskPorts(m: TaskModules): TaskPorts {
  return {
    async agent(teamId, agentId, version) {
      const found = await m.agents.forTask(teamId, agentId, version);
      if (!found) return undefined;
      const { row } = found;
      return {
        id: row.id as never,
        name: row.name,
        description: row.description,
        status: row.status,
        policyId: row.policyId,
        version: found.version,
        definition: found.definition,
      };
    },
    teamTaskLimit: async (teamId) => (await m.teams.limitsOf(teamId)).max_concurrent_tasks,
    // The proxy's caches (the agent's row, the opened keys): the keys its next call could use.
    async usableKeyCount(teamId, agentId) {
      const row = await m.agents.getForCall(agentId);
      if (row?.teamId !== teamId) return 0;
      return (await m.providers.keysForCall(teamId, boundKeyIds(row.providerKeys))).size;
    },
    environment: (teamId, versionId) => m.environments.forTask(teamId, versionId),
    unknownFiles: (teamId, ids) => m.files.unknownFileIds(teamId, ids),
    async fileName(teamId, fileId) {
      try {
        return (await m.files.get(systemPrincipal(teamId, 'tasks'), fileId)).filename;
      } catch (err) {
        if (err instanceof NotFoundError) return undefined;
        throw err;
      }
    },
    async readFile(teamId, fileId) {
      const { file, body } = await m.files.download(systemPrincipal(teamId, 'tasks'), fileId);
      return { name: file.filename, data: await bytesOf(body) };
    },
    openFile: (teamId, fileId) => m.files.download(systemPrincipal(teamId, 'tasks'), fileId),
    async writeFile(teamId, actor, file) {
      const stored = await m.files.upload(systemPrincipal(teamId, actor), {
        filename: file.name,
        contentType: undefined,
        source: Readable.from([file.data]),
      });
      return stored.id;
    },
    secrets: (teamId, agentId) => m.secrets.forAgent(teamId, agentId),
    resolveModel: (model) => resolveModelAlias(model).model,
    policy: (teamId, policyId) => m.policies.findForTeam(teamId, policyId),
    async modelRefusal(teamId, policyId, model) {
      const policy = await m.policies.findForTeam(teamId, policyId);
      if (!policy || policy.spec.model_override) return undefined;
      const ruling = checkModel(policy.spec, model);
      return ruling.ok ? undefined : ruling.message;
    },
    callModel: (req) => m.gateway.handle(req),
    runs: {
      start: (input, tx) =>
        m.runs.startTaskRun(
          {
            id: input.id,
            teamId: input.teamId,
            agent: input.agent,
            policy: input.policy as never,
            runName: input.name,
            runMetadata: input.metadata,
            maxBudgetMicros: input.maxBudgetMicros,
            ...(input.isNew ? { isNew: true } : {}),
          },
          tx,
        ),
      async end(teamId, runId, outcome, reason) {
        const run = await m.runs.endTaskRun(teamId, runId, outcome, reason);
        if (!run) return undefined;
        return {
          costMicros: run.costMicros,
          inputTokens: run.inputTokens + run.cacheReadTokens + run.cacheCreationTokens,
          outputTokens: run.outputTokens,
          status: run.status,
        };
      },
      flushSteps: () => m.runs.flushSteps(),
      async chargeSandbox(input) {
        const { costMicros } = await m.runs.recordSandboxUsage(input);
        return { costMicros };
      },
    },
    capsules: {
      async start(teamId, actor, input, created) {
        const principal = systemPrincipal(teamId, actor);
        // A capsule placed on a host that died a moment ago (not yet unreachable to all) fails
        // to start having run nothing; the second is placed elsewhere (placement passes over a
        // host this server just failed to reach).
        for (let attempt = 1; ; attempt++) {
          const c = await m.capsules.create(principal, {
            template: input.template,
            ...(input.networkAllow.length > 0 ? { network: { allow: input.networkAllow } } : {}),
            metadata: input.metadata,
          });
          const id = capsuleId(c.id);
          await created(id);
          const ready = await m.capsules.get(principal, id, {
            statuses: ['running'],
            timeoutMs: input.timeoutMs,
          });
          if (ready.status === 'running')
            return {
              id,
              tools: toolCapsule(m.capsules, principal, id),
              vcpus: c.vcpus,
              memoryMb: c.memory_mb,
            };
          await m.capsules.remove(principal, id).catch(() => undefined);
          const hostDown = ready.status === 'error' && /unreachable/.test(ready.status_reason ?? '');
          if (attempt === 2 || !hostDown)
            throw new Error(
              `capsule ${id} is ${ready.status}, not running${ready.status_reason ? ` (${ready.status_reason})` : ''}`,
            );
        }
      },
      async reuse(teamId, actor, id, timeoutMs) {
        const principal = systemPrincipal(teamId, actor);
        const tools = toolCapsule(m.capsules, principal, capsuleId(id));
        const known = m.capsules.knownRunning(principal, capsuleId(id));
        if (known) return { id, tools, ...known, resumed: false };
        let c: Awaited<ReturnType<CapsulesService['get']>>;
        try {
          c = await m.capsules.get(principal, capsuleId(id), {
            statuses: ['running', 'paused'],
            timeoutMs,
          });
          const resumed = c.status === 'paused';
          if (resumed) await m.capsules.resume(principal, capsuleId(id));
          if (c.status !== 'running')
            c = await m.capsules.get(principal, capsuleId(id), { statuses: ['running'], timeoutMs });
          if (c.status !== 'running') return undefined;
          return {
            id: c.id,
            tools,
            vcpus: c.vcpus,
            memoryMb: c.memory_mb,
            resumed,
          };
        } catch (err) {
          if (err instanceof NotFoundError || (err instanceof AppError && err.statusCode === 409))
            return undefined;
          throw err;
        }
      },
      async describe(teamId, actor, id) {
        try {
          const c = await m.capsules.get(systemPrincipal(teamId, actor), capsuleId(id));
          return { vcpus: c.vcpus, memoryMb: c.memory_mb };
        } catch (err) {
          if (err instanceof NotFoundError) return undefined;
          throw err;
        }
      },
      async pause(teamId, actor, id, onlyIf) {
        await m.capsules
          .pauseIf(systemPrincipal(teamId, actor), capsuleId(id), 'workspace_idle', onlyIf)
          .catch((err: unknown) => {
            if (!(err instanceof NotFoundError || (err instanceof AppError && err.statusCode === 409)))
              throw err;
          });
      },
      async destroy(teamId, actor, id) {
        await m.capsules.remove(systemPrincipal(teamId, actor), capsuleId(id)).catch((err: unknown) => {
          if (!(err instanceof NotFoundError)) throw err;
        });
      },
    },
    approvals: {
      async status(teamId, approvalId) {
        try {
          return (await m.approvals.get(systemPrincipal(teamId, 'tasks'), approvalId)).status;
        } catch (err) {
          if (err instanceof NotFoundError) return undefined;
          throw err;
        }
      },
    },
  };
}
