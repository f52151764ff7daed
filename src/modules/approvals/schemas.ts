import { type Static, Type } from 'typebox';
import { Body, ListQuery, Nullable, NullableTimestamp, Paginated, Timestamp } from '../../http/schemas.ts';

export const ApprovalStatus = Type.Enum(['pending', 'approved', 'rejected', 'expired', 'consumed'], {
  description: 'expired: still pending past expires_at; consumed: approved and used by the replayed request',
});

export const Approval = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  run_id: Type.String(),
  step_id: Nullable(Type.String()),
  agent_id: Type.String(),
  policy_id: Type.String(),
  tool_name: Type.String(),
  status: ApprovalStatus,
  request_snapshot: Type.Unknown({
    description: 'the request body as sent (redacted when content logging is off)',
  }),
  decided_by: Nullable(Type.String()),
  reason: Nullable(Type.String({ description: 'rejection reason' })),
  decided_at: NullableTimestamp,
  expires_at: Timestamp,
  created_at: Timestamp,
});
export const Approvals = Paginated(Approval);

export const ApprovalListQuery = ListQuery({
  status: Type.Optional(ApprovalStatus),
  run_id: Type.Optional(Type.String({ maxLength: 100 })),
  agent_id: Type.Optional(Type.String({ maxLength: 100 })),
});
export type ApprovalListQueryType = Static<typeof ApprovalListQuery>;

export const RejectBody = Body({ reason: Type.Optional(Nullable(Type.String({ maxLength: 1024 }))) });
