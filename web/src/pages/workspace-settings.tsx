import { useMutation, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { api, unwrap } from '../api.ts';
import { Button, CheckField, ErrorNote, Section, TextField } from '../ui.tsx';

type Patch = { name?: string; starred?: boolean; archived?: boolean; model_override?: string | null };

/** PATCH /v1/workspaces/{id}, then the workspace and the lists refetched. */
export function usePatchWorkspace(id: string) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (body: Patch) => unwrap(api.PATCH('/v1/workspaces/{id}', { params: { path: { id } }, body })),
    onSuccess: (updated) => {
      client.setQueryData(['workspaces', id], updated);
      void client.invalidateQueries({ queryKey: ['workspaces', 'list'] });
    },
  });
}

/** Star or unstar: a toggle button (pressed while starred), as the list and the conversation show it. */
export function StarButton(props: { id: string; name: string; starred: boolean }) {
  const patch = usePatchWorkspace(props.id);
  return (
    <Button
      aria-pressed={props.starred}
      aria-label={`Star ${props.name}`}
      busy={patch.isPending}
      onClick={() => patch.mutate({ starred: !props.starred })}
    >
      <span aria-hidden="true">{props.starred ? '★' : '☆'}</span> Star
    </Button>
  );
}

/** What a user may change of a conversation: its name, the model of its next turns, archived. */
export function WorkspaceSettings(props: {
  workspace: { id: string; name: string | null; model_override: string | null; archived: boolean };
}) {
  const w = props.workspace;
  const patch = usePatchWorkspace(w.id);
  const [name, setName] = useState(w.name ?? '');
  const [model, setModel] = useState(w.model_override ?? '');
  const submit = (e: FormEvent) => {
    e.preventDefault();
    patch.mutate({
      ...(name.trim() !== '' ? { name: name.trim() } : {}),
      model_override: model.trim() === '' ? null : model.trim(),
    });
  };
  return (
    <Section title="Settings">
      <form onSubmit={submit}>
        <div className="grid-form">
          <TextField label="Name" value={name} onChange={(e) => setName(e.target.value)} />
          <TextField
            label="Model of the next turns"
            placeholder="the agent's model"
            hint="Must be one the agent's policy allows. Empty: the agent's own."
            value={model}
            onChange={(e) => setModel(e.target.value)}
          />
        </div>
        <CheckField
          label="Archived"
          hint="Archived conversations leave the list unless it shows them."
          checked={w.archived}
          onChange={(archived) => patch.mutate({ archived })}
        />
        <ErrorNote error={patch.error} />
        {patch.isSuccess ? (
          <p className="muted" role="status">
            Saved.
          </p>
        ) : null}
        <Button type="submit" busy={patch.isPending}>
          Save settings
        </Button>
      </form>
    </Section>
  );
}
