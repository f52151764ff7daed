import type { Context } from '../../core/context.ts';
import { AppError, BadRequestError, UnauthorizedError } from '../../core/errors.ts';
import { type AgentId, isId, newId, type ResponseId, type TeamId } from '../../core/ids.ts';
import { storableText } from '../../core/input-guard.ts';
import type { Db } from '../../db/client.ts';
import type { ResponseItem } from '../../db/schema/index.ts';
import type { ProxyRequest, ProxyResult } from './call.ts';
import {
  echoedParams,
  framed,
  inputItemsPage,
  type ResponseFrame,
  storedItems,
  storedResponseObject,
  withoutId,
} from './responses-items.ts';
import {
  deleteResponse,
  findOutputItems,
  findResponse,
  insertResponse,
  type StoredResponseRow,
} from './responses-repo.ts';
import { formatSse } from './sse.ts';
import { isObject, type JsonObject, parseJson } from './translation-common.ts';

/** Events whose `response` object gets Paddock's id and the request's echo. */
const FRAMED_EVENTS = new Set([
  'response.created',
  'response.queued',
  'response.in_progress',
  'response.completed',
  'response.incomplete',
  'response.failed',
]);
/** The most distinct stored items one request may refer to (`item_reference`), each one lookup. */
const MAX_REFERENCES = 100;

/** The events that end a stream with an answer: the response is stored before they reach the client. */
const FINAL_EVENTS = new Set(['response.completed', 'response.incomplete']);

export type CreateResponseRequest = Omit<ProxyRequest, 'format'>;

/**
 * OpenAI's Responses API in front of the governed gateway. Paddock keeps the
 * conversation: `previous_response_id` names a response it stored (this
 * agent's), whose input and output are put before the request's input, so
 * every provider — after failover too — receives the whole conversation and
 * the budget estimates all of it. The provider never stores anything
 * (`store: false`), and the client sees Paddock's `resp_…` id.
 */
export class ResponsesService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly gateway: { handle(req: ProxyRequest): Promise<ProxyResult> },
    private readonly teamOf: (agentId: AgentId) => Promise<TeamId | undefined>,
  ) {}

  async create(req: CreateResponseRequest): Promise<ProxyResult> {
    const { agentId, body } = req;
    const teamId = await this.team(agentId);
    const previousId = typeof body.previous_response_id === 'string' ? body.previous_response_id : null;
    const previous = previousId === null ? undefined : await this.find(teamId, agentId, previousId);
    const history = previous ? [...previous.input, ...previous.output] : [];
    const input = [...history, ...(await this.resolveReferences(teamId, agentId, history, body.input))];
    const { previous_response_id: _previous, store: _store, ...rest } = body;
    const frame: ResponseFrame = {
      id: newId('resp'),
      instructions: typeof body.instructions === 'string' ? body.instructions : null,
      metadata: isObject(body.metadata) ? body.metadata : {},
      previousResponseId: previous ? previous.id : null,
      store: body.store !== false,
      params: echoedParams(body),
    };
    const result = await this.gateway.handle({
      ...req,
      format: 'responses',
      body: { ...rest, input: input.map(withoutId), store: false },
    });
    const save = (response: JsonObject) =>
      frame.store ? this.save(teamId, agentId, frame, input, response, result.headers) : Promise.resolve();
    if (result.kind === 'json') {
      // A refusal, an approval to wait for or a provider's error goes back as it is.
      if (result.status !== 200 || !isObject(result.body)) return result;
      const response = framed(result.body, frame);
      await save(response);
      return { ...result, body: response };
    }
    return { ...result, chunks: framedStream(result.chunks, frame, save) };
  }

  async get(agentId: AgentId, id: string): Promise<JsonObject> {
    return storedResponseObject(await this.find(await this.team(agentId), agentId, id));
  }

  async delete(agentId: AgentId, id: string): Promise<{ id: string; object: 'response'; deleted: true }> {
    const teamId = await this.team(agentId);
    if (!isId(id, 'resp') || !(await deleteResponse(this.db, teamId, agentId, id))) throw notFound(id);
    return { id, object: 'response', deleted: true };
  }

  async inputItems(
    agentId: AgentId,
    id: string,
    q: { limit?: number; order?: 'asc' | 'desc'; after?: string },
  ): Promise<JsonObject> {
    const row = await this.find(await this.team(agentId), agentId, id);
    return inputItemsPage(row.input, q);
  }

  /**
   * The request's items, each `item_reference` replaced by the item it names:
   * one of the restored conversation's, or an output item of a response this
   * agent stored (the Vercel AI SDK refers to earlier reasoning items so). The
   * provider never sees a reference: it stores nothing, so it would not know it.
   */
  private async resolveReferences(
    teamId: TeamId,
    agentId: AgentId,
    history: ResponseItem[],
    input: unknown,
  ): Promise<ResponseItem[]> {
    const items = storedItems(input);
    const refs = [...new Set(items.filter((i) => i.type === 'item_reference').map((i) => String(i.id)))];
    if (refs.length === 0) return items;
    if (refs.length > MAX_REFERENCES)
      throw new BadRequestError(
        'too_many_item_references',
        `a request may refer to at most ${MAX_REFERENCES} stored items (it names ${refs.length})`,
      );
    const known = new Map(history.filter((i) => typeof i.id === 'string').map((i) => [i.id as string, i]));
    const missing = refs.filter((id) => !known.has(id));
    for (const [id, item] of await findOutputItems(this.db, teamId, agentId, missing)) known.set(id, item);
    return items.map((item) => {
      if (item.type !== 'item_reference') return item;
      const found = known.get(String(item.id));
      if (!found)
        throw new AppError(404, 'item_not_found', `no stored item with id ${JSON.stringify(item.id)}`);
      return found;
    });
  }

  private async team(agentId: AgentId): Promise<TeamId> {
    const teamId = await this.teamOf(agentId);
    if (!teamId) throw new UnauthorizedError('invalid_agent_key', 'this agent key is not valid');
    return teamId;
  }

  private async find(teamId: TeamId, agentId: AgentId, id: string): Promise<StoredResponseRow> {
    const row = isId(id, 'resp') ? await findResponse(this.db, teamId, agentId, id) : undefined;
    if (!row) throw notFound(id);
    return row;
  }

  private async save(
    teamId: TeamId,
    agentId: AgentId,
    frame: ResponseFrame,
    input: ResponseItem[],
    response: JsonObject,
    headers: Record<string, string>,
  ): Promise<void> {
    const runId = headers['x-paddock-run-id'];
    const stepId = headers['x-paddock-step-id'];
    // A model's output may hold what Postgres cannot store (NUL, lone surrogates): replaced, as in steps.
    const row = storableText({
      id: frame.id as ResponseId,
      teamId,
      agentId,
      runId: runId && isId(runId, 'run') ? runId : null,
      stepId: stepId && isId(stepId, 'stp') ? stepId : null,
      model: typeof response.model === 'string' ? response.model : '',
      status: typeof response.status === 'string' ? response.status : 'completed',
      input,
      output: Array.isArray(response.output) ? response.output.filter(isObject) : [],
      usage: isObject(response.usage) ? response.usage : null,
      instructions: frame.instructions,
      metadata: frame.metadata,
      params: frame.params,
      incompleteDetails: isObject(response.incomplete_details) ? response.incomplete_details : null,
      previousResponseId: frame.previousResponseId as ResponseId | null,
      createdAt: this.ctx.clock.now(),
    });
    // The call is answered and charged by now: a failed save must not turn it into an error the
    // client would retry (and pay for again). The response just cannot be named later.
    await insertResponse(this.db, row).catch((err: unknown) =>
      this.ctx.log.error({ err, response_id: frame.id }, 'responses: could not store a response'),
    );
  }
}

function notFound(id: string): AppError {
  return new AppError(404, 'response_not_found', `no stored response with id ${JSON.stringify(id)}`);
}

/**
 * The provider's events (translated or passed through) with Paddock's id and
 * the request's echo in every response object; the finished response is
 * stored before the stream ends, so the client can name it right away.
 * Only the few events that carry a response object are parsed.
 */
function framedStream(
  chunks: AsyncGenerator<string, void, undefined>,
  frame: ResponseFrame,
  save: (response: JsonObject) => Promise<void>,
): AsyncGenerator<string, void, undefined> {
  async function* framing(): AsyncGenerator<string, void, undefined> {
    for await (const chunk of chunks) {
      const type = chunk.startsWith('event: response.') ? chunk.slice(7, chunk.indexOf('\n')) : undefined;
      const data =
        type && FRAMED_EVENTS.has(type) ? parseJson(chunk.slice(chunk.indexOf('data: ') + 6)) : undefined;
      if (!data || !isObject(data.response)) {
        yield chunk;
        continue;
      }
      const response = framed(data.response, frame);
      data.response = response;
      // Stored before the client hears the end: a client that stops reading there (the SDKs'
      // iterators may) names the id in its next request at once.
      if (FINAL_EVENTS.has(type!)) await save(response);
      yield formatSse({ event: type, data: JSON.stringify(data) });
    }
  }
  const framing$ = framing();
  // Returning the wrapper before it started must still end (and settle) the gateway's stream.
  return {
    next: () => framing$.next(),
    async return(value) {
      const r = await framing$.return(value);
      await chunks.return(undefined);
      return r;
    },
    async throw(err) {
      await chunks.return(undefined);
      return framing$.throw(err);
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
