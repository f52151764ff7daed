import type { CreditsConfig } from '../../config.ts';
import type { Context } from '../../core/context.ts';
import { AppError, ForbiddenError, NotFoundError, ValidationError } from '../../core/errors.ts';
import { isId, newId, type TeamId } from '../../core/ids.ts';
import { pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { CreditState, CreditTransactionType } from '../../db/schema/index.ts';
import type { EventsService } from '../events/service.ts';
import {
  type Actor,
  activeTeam,
  actorOf,
  managedTeam,
  type Principal,
  requireScope,
} from '../identity/principal.ts';
import type { CreditsPort } from '../runs/budget.ts';
import { CreditRate, creditsOf, microCreditsOf } from './rate.ts';
import * as repo from './repo.ts';
import type { AdjustInput, ConsumeInput, TransactionListInput, UpdateAccountInput } from './schemas.ts';
import { accountView, type TransactionView, transactionView } from './views.ts';

/** 402 insufficient_credits: the team's balance does not cover what was asked. */
export class InsufficientCreditsError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super(402, 'insufficient_credits', message, details);
  }
}

/** A change of a balance that Paddock or a platform admin makes (purchases, grants, refunds, adjustments). */
export interface CreditChange {
  teamId: TeamId;
  type: Exclude<CreditTransactionType, 'consume'>;
  /** Credits, signed (an adjustment may take away). */
  amount: number;
  reason: string;
  referenceType?: string | null;
  referenceId?: string | null;
  /** The same key again answers the first transaction and changes nothing. */
  idempotencyKey?: string | null;
  actor: Actor;
}

/** Writes one transaction to a locked account: what changeBalance runs unless the key is known. */
type ApplyChange = (
  tx: DbOrTx,
  account: repo.AccountRow,
  now: Date,
) => Promise<{ transaction: repo.TransactionRow; account: repo.AccountRow }>;

/** Told of balances (micro-credits) after they changed; see CreditsService.onBalance. */
export type BalanceListener = (balances: ReadonlyArray<{ teamId: TeamId; balance: number }>) => Promise<void>;

/** After a balance moved: its state, worst first. */
export function stateOf(balance: number, threshold: number): CreditState {
  if (balance <= 0) return 'exhausted';
  return balance < threshold ? 'low' : 'ok';
}

const RANK: Record<CreditState, number> = { ok: 0, low: 1, exhausted: 2 };

/**
 * A team's credits (Orkosi's tokens and AgentContainer's credit balance as
 * one): a balance that ledger usage consumes at the platform's markup (the
 * step writer does that, in the batch that writes the ledger), external
 * usage consumes by reference, and purchases, grants and refunds add to.
 */
export class CreditsService {
  readonly rate: CreditRate;
  private readonly defaultThreshold: number;
  private readonly listeners: BalanceListener[] = [];

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    readonly config: CreditsConfig,
  ) {
    this.rate = new CreditRate(config.priceUsd, config.markup);
    this.defaultThreshold = microCreditsOf(config.lowThreshold);
  }

  get enforced(): boolean {
    return this.config.mode === 'enforce';
  }

  async get(principal: Principal) {
    const teamId = activeTeam(principal);
    requireScope(principal, 'read');
    return this.viewOf(teamId);
  }

  /** The team's account as GET /v1/credits shows it (a team that never had one shows zero). */
  async viewOf(teamId: TeamId) {
    const now = this.ctx.clock.now();
    const row = (await repo.findAccount(this.db, teamId)) ?? {
      teamId,
      balance: 0,
      held: 0,
      lowThreshold: null,
      state: 'exhausted' as const,
      updatedAt: now,
    };
    return accountView(row, this.config, this.defaultThreshold);
  }

  async update(principal: Principal, input: UpdateAccountInput) {
    const teamId = managedTeam(principal, 'admin', 'credits');
    const now = this.ctx.clock.now();
    await this.db.transaction(async (tx) => {
      const account = await repo.lockAccount(tx, teamId, now);
      const threshold = input.low_threshold === null ? null : microCreditsOf(input.low_threshold);
      // A new threshold places the balance afresh, without an event: nothing was spent.
      const state = stateOf(account.balance, threshold ?? this.defaultThreshold);
      await repo.updateAccount(tx, teamId, { lowThreshold: threshold, state }, now);
    });
    return this.viewOf(teamId);
  }

  async transactions(principal: Principal, q: TransactionListInput) {
    const teamId = activeTeam(principal);
    requireScope(principal, 'read');
    return pageOf(
      q,
      (cursor, rows) =>
        repo.listTransactions(this.db, teamId, { type: q.type, referenceId: q.reference_id }, cursor, rows),
      transactionView,
    );
  }

  /**
   * External usage (an agent that runs elsewhere, a tool billed by the
   * call): consumed at once, idempotent by reference_id. Under enforcement
   * it must fit the balance not held for calls in flight (402).
   */
  async consume(
    principal: Principal,
    input: ConsumeInput,
  ): Promise<{ transaction: TransactionView; created: boolean }> {
    const teamId = activeTeam(principal);
    requireScope(principal, 'write');
    const amount = microCreditsOf(input.amount);
    if (amount === 0)
      throw new ValidationError('the request body is invalid: amount', {
        amount: 'must be at least 0.000001',
      });
    const key = `consume:${input.reference_id}`;
    const actor = actorOf(principal);
    return this.changeBalance(teamId, key, async (tx, account, now) => {
      if (this.enforced && account.balance - account.held < amount)
        throw new InsufficientCreditsError(
          `the team has ${creditsOf(Math.max(0, account.balance - account.held))} credits available; ${input.amount} were asked`,
          { available: creditsOf(account.balance - account.held), requested: input.amount },
        );
      return repo.applyTransaction(tx, {
        id: newId('ctx'),
        teamId,
        type: 'consume',
        amount: -amount,
        reason: input.reason ?? `external usage: ${input.action}`,
        action: input.action,
        referenceType: 'external',
        referenceId: input.reference_id,
        idempotencyKey: key,
        ...actor,
        createdAt: now,
      });
    });
  }

  /** A platform admin's grant, refund or adjustment to a team's balance. */
  async adjust(principal: Principal, teamIdRaw: string, input: AdjustInput) {
    if (!principal.isPlatformAdmin)
      throw new ForbiddenError('platform_admin_required', "only platform admins change a team's credits");
    if (!isId(teamIdRaw, 'team')) throw new NotFoundError('team', teamIdRaw);
    if (microCreditsOf(input.amount) === 0 || (input.type !== 'adjustment' && input.amount < 0))
      throw new ValidationError('the request body is invalid: amount', {
        amount:
          input.type === 'adjustment'
            ? 'must not be zero (at least 0.000001 either way)'
            : `must be positive for a ${input.type}`,
      });
    if (!(await this.teamExists(teamIdRaw))) throw new NotFoundError('team', teamIdRaw);
    const result = await this.add({
      teamId: teamIdRaw,
      type: input.type,
      amount: input.amount,
      reason: input.reason,
      referenceType: input.reference_id ? 'admin' : null,
      referenceId: input.reference_id ?? null,
      idempotencyKey: input.reference_id ? `${input.type}:${input.reference_id}` : null,
      actor: actorOf(principal),
    });
    return { ...result, account: await this.viewOf(teamIdRaw) };
  }

  private async teamExists(teamId: TeamId): Promise<boolean> {
    return (await repo.findLiveTeam(this.db, teamId)) !== undefined;
  }

  /** Purchases (billing), grants, refunds, adjustments: idempotent by key; a credits.added event tells. */
  async add(change: CreditChange): Promise<{ transaction: TransactionView; created: boolean }> {
    const result = await this.db.transaction((tx) => this.addIn(tx, change));
    this.tellBalance(change.teamId, result.balance);
    return { transaction: result.transaction, created: result.created };
  }

  /**
   * `add` inside the caller's transaction (billing applies a Stripe event and
   * records it as processed in one): the balance after it comes back too.
   */
  async addIn(
    tx: DbOrTx,
    change: CreditChange,
  ): Promise<{ transaction: TransactionView; created: boolean; balance: number }> {
    return this.changeBalanceIn(tx, change.teamId, change.idempotencyKey ?? null, (tx, _account, now) =>
      repo.applyTransaction(tx, {
        id: newId('ctx'),
        teamId: change.teamId,
        type: change.type,
        amount: microCreditsOf(change.amount),
        reason: change.reason,
        action: null,
        referenceType: change.referenceType ?? null,
        referenceId: change.referenceId ?? null,
        idempotencyKey: change.idempotencyKey ?? null,
        actorKind: change.actor.actorKind,
        actorId: change.actor.actorId,
        createdAt: now,
      }),
    );
  }

  /**
   * One change of a balance, in a transaction holding the account's row:
   * a known idempotency key answers its transaction; otherwise `apply` runs,
   * and the account's state follows its new balance (events on the way).
   */
  private async changeBalance(
    teamId: TeamId,
    key: string | null,
    apply: ApplyChange,
  ): Promise<{ transaction: TransactionView; created: boolean }> {
    const result = await this.db.transaction((tx) => this.changeBalanceIn(tx, teamId, key, apply));
    this.tellBalance(teamId, result.balance);
    return { transaction: result.transaction, created: result.created };
  }

  private async changeBalanceIn(
    tx: DbOrTx,
    teamId: TeamId,
    key: string | null,
    apply: ApplyChange,
  ): Promise<{ transaction: TransactionView; created: boolean; balance: number }> {
    const now = this.ctx.clock.now();
    const locked = await repo.lockAccount(tx, teamId, now);
    const known = key === null ? undefined : await repo.findByIdempotencyKey(tx, teamId, key);
    if (known) return { transaction: transactionView(known), created: false, balance: locked.balance };
    const { transaction, account } = await apply(tx, locked, now);
    await this.follow(tx, account);
    if (transaction.type !== 'consume')
      await this.events.record(tx, {
        teamId,
        actorKind: transaction.actorKind,
        actorId: transaction.actorId,
        subjectId: transaction.id,
        type: 'credits.added',
        data: {
          type: transaction.type,
          amount: creditsOf(transaction.amount),
          balance: creditsOf(account.balance),
          reason: transaction.reason,
        },
      });
    return { transaction: transactionView(transaction), created: true, balance: account.balance };
  }

  /**
   * Who hears of balances after they change (billing's auto top-up). Told
   * after the change committed, never awaited: a listener's work is its own
   * and cannot slow or fail the change.
   */
  onBalance(listener: BalanceListener): void {
    this.listeners.push(listener);
  }

  private tellBalance(teamId: TeamId, balanceMicros: number): void {
    this.tellBalances([{ teamId, balance: balanceMicros }]);
  }

  private tellBalances(balances: ReadonlyArray<{ teamId: TeamId; balance: number }>): void {
    for (const listener of this.listeners) {
      listener(balances).catch((err: unknown) =>
        this.ctx.log.error({ err }, 'a listener of credit balances failed'),
      );
    }
  }

  /**
   * The account's state follows its balance: down to low or exhausted, an
   * event (once: the move is conditional on the state it leaves); back up,
   * silently. Call it in the transaction that changed the balance, or after
   * the step writer's batch with the balances it answered.
   */
  async follow(tx: DbOrTx, account: Pick<repo.AccountRow, 'teamId' | 'balance' | 'lowThreshold' | 'state'>) {
    const threshold = account.lowThreshold ?? this.defaultThreshold;
    const next = stateOf(account.balance, threshold);
    if (next === account.state) return;
    if (!(await repo.moveState(tx, account.teamId, account.state, next))) return;
    if (RANK[next] <= RANK[account.state]) return;
    const base = { teamId: account.teamId, actorKind: 'system', actorId: null, subjectId: account.teamId };
    if (next === 'exhausted')
      await this.events.record(tx, {
        ...base,
        type: 'credits.exhausted',
        data: { balance: creditsOf(account.balance), enforced: this.enforced },
      });
    else
      await this.events.record(tx, {
        ...base,
        type: 'credits.low',
        data: { balance: creditsOf(account.balance), threshold: creditsOf(threshold) },
      });
  }

  /**
   * Balances a step batch changed: each that looks moved follows in its own
   * small transaction (rarely anything to do). The account is read again
   * under its lock there, not taken from the batch's answer: two batches
   * that both answered `ok` before either followed would otherwise race,
   * the first moving it to `low` and the second's move from `ok` to
   * `exhausted` then finding it no longer `ok`.
   */
  async followAll(
    accounts: ReadonlyArray<Pick<repo.AccountRow, 'teamId' | 'balance' | 'lowThreshold' | 'state'>>,
  ) {
    const moved = accounts.filter(
      (a) => stateOf(a.balance, a.lowThreshold ?? this.defaultThreshold) !== a.state,
    );
    for (const { teamId } of moved)
      await this.db.transaction(async (tx) =>
        this.follow(tx, await repo.lockAccount(tx, teamId, this.ctx.clock.now())),
      );
    if (accounts.length > 0) this.tellBalances(accounts);
  }

  /** The runs module's side of credits (the budget system's port). */
  port(): CreditsPort {
    return {
      enforce: this.enforced,
      rate: this.rate,
      balancesChanged: (accounts) => this.followAll(accounts),
      consumeIn: async (tx, use) => {
        if (use.amount <= 0) return;
        await repo.lockAccount(tx, use.teamId, use.at);
        const { account } = await repo.applyTransaction(tx, {
          id: newId('ctx'),
          teamId: use.teamId,
          type: 'consume',
          amount: -use.amount,
          reason: use.reason,
          action: 'usage',
          referenceType: 'run',
          referenceId: use.runId,
          idempotencyKey: null,
          actorKind: 'system',
          actorId: null,
          createdAt: use.at,
        });
        await this.follow(tx, account);
      },
    };
  }

  /**
   * Before a capsule starts (enforcement only): a team without credits
   * available starts none (402). Running capsules are charged as they run.
   */
  async requireAvailable(teamId: TeamId, what: string): Promise<void> {
    if (!this.enforced) return;
    const account = await repo.findAccount(this.db, teamId);
    const available = account ? account.balance - account.held : 0;
    if (available <= 0)
      throw new InsufficientCreditsError(
        `the team has no credits available to start ${what} (balance ${creditsOf(account?.balance ?? 0)}, held for calls in flight ${creditsOf(account?.held ?? 0)})`,
        { available: creditsOf(Math.max(0, available)) },
      );
  }
}
