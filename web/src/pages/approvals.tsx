import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { useSearchParams } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import { Badge, Button, Empty, ErrorNote, Json, Loading, Page, SelectField, TextField } from '../ui.tsx';
import { useAgents } from './agents.tsx';

const STATUSES = ['pending', 'approved', 'rejected', 'expired', 'consumed'] as const;
type Status = (typeof STATUSES)[number];
type Approval = Awaited<ReturnType<typeof listApprovals>>['data'][number];

function listApprovals(status: Status) {
  return unwrap(api.GET('/v1/approvals', { params: { query: { status, limit: 200 } } }));
}

export function ApprovalsPage() {
  const [params, setParams] = useSearchParams();
  const status = (STATUSES as readonly string[]).includes(params.get('status') ?? '')
    ? (params.get('status') as Status)
    : 'pending';
  const approvals = useQuery({
    queryKey: ['approvals', status],
    queryFn: () => listApprovals(status),
    refetchInterval: status === 'pending' ? 3_000 : false,
  });
  return (
    <Page title="Approvals">
      <p className="muted lead">
        A policy can require a person to approve a model call that offers certain tools. The agent's task
        waits until someone here approves or rejects it.
      </p>
      <div className="filter">
        <SelectField
          label="Show"
          options={STATUSES.map((s) => ({ value: s, label: s }))}
          value={status}
          onChange={(e) => setParams(e.target.value === 'pending' ? {} : { status: e.target.value })}
        />
      </div>
      {approvals.isPending ? <Loading what="approvals" /> : null}
      <ErrorNote error={approvals.error} />
      {approvals.data?.data.length === 0 ? (
        <Empty title={status === 'pending' ? 'Nothing is waiting for you.' : `No ${status} approvals.`}>
          {status === 'pending'
            ? 'When an agent calls a tool that its policy lists under "Tools that need approval", the request appears here.'
            : 'Choose another status to see other decisions.'}
        </Empty>
      ) : null}
      <ul className="cards">
        {approvals.data?.data.map((approval) => (
          <li key={approval.id}>
            <ApprovalCard approval={approval} />
          </li>
        ))}
      </ul>
    </Page>
  );
}

/** What the model was about to be asked, in short: the last message of the request. */
function lastMessage(snapshot: unknown): string | undefined {
  const messages = (snapshot as { messages?: Array<{ content?: unknown }> } | null)?.messages;
  const content = messages?.[messages.length - 1]?.content;
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => (typeof part === 'object' && part && 'text' in part ? String(part.text) : ''))
      .join(' ')
      .trim();
  }
  return undefined;
}

function ApprovalCard(props: { approval: Approval }) {
  const a = props.approval;
  const client = useQueryClient();
  const agents = useAgents();
  const [reason, setReason] = useState('');
  const done = () => client.invalidateQueries({ queryKey: ['approvals'] });
  const approve = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/approvals/{id}/approve', { params: { path: { id: a.id } } })),
    onSuccess: done,
  });
  const reject = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST('/v1/approvals/{id}/reject', {
          params: { path: { id: a.id } },
          body: { reason: reason.trim() || null },
        }),
      ),
    onSuccess: done,
  });
  const agent = agents.data?.data.find((x) => x.id === a.agent_id)?.name ?? a.agent_id;
  const message = lastMessage(a.request_snapshot);
  return (
    <article className="card approval" aria-label={`Approval for ${a.tool_name} by ${agent}`}>
      <div className="card-head">
        <h2>
          <code>{a.tool_name}</code> for {agent}
        </h2>
        <Badge status={a.status} />
      </div>
      <p className="muted">
        Asked {when(a.created_at)}
        {a.status === 'pending' ? ` · expires ${when(a.expires_at)}` : ''}
        {a.reason ? ` · reason: ${a.reason}` : ''}
      </p>
      {message ? <p className="message">{message}</p> : null}
      <details>
        <summary>The request as sent</summary>
        <Json value={a.request_snapshot} />
      </details>
      {a.status === 'pending' ? (
        <div className="decide">
          <TextField
            label="Reason (if rejecting)"
            value={reason}
            onChange={(e) => setReason(e.target.value)}
          />
          <div className="actions">
            <Button variant="primary" busy={approve.isPending} onClick={() => approve.mutate()}>
              Approve
            </Button>
            <Button variant="danger" busy={reject.isPending} onClick={() => reject.mutate()}>
              Reject
            </Button>
          </div>
          <ErrorNote error={approve.error ?? reject.error} />
        </div>
      ) : null}
    </article>
  );
}
