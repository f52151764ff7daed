import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { useNavigate } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import { Button, ConfirmButton, DataTable, Empty, ErrorNote, Section, TextField } from '../ui.tsx';
import { size } from './task-files.tsx';

/**
 * A sandbox's snapshots (Wrenn's live snapshots: a running capsule frozen
 * briefly into a new template): take one, restore one into a new sandbox
 * started from it, delete one. Snapshots are templates of the team, listed
 * here by the sandbox they came from.
 */
export function CapsuleSnapshots(props: { capsuleId: string; running: boolean }) {
  const client = useQueryClient();
  const navigate = useNavigate();
  const [name, setName] = useState('');
  const snapshots = useQuery({
    queryKey: ['snapshots', 'snapshot'],
    queryFn: () => unwrap(api.GET('/v1/snapshots', { params: { query: { type: 'snapshot' } } })),
    select: (list) => ({ data: list.data.filter((t) => t.source_capsule_id === props.capsuleId) }),
  });
  const refresh = () => client.invalidateQueries({ queryKey: ['snapshots'] });
  const take = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST('/v1/snapshots', {
          body: { sandbox_id: props.capsuleId, ...(name.trim() !== '' ? { name: name.trim() } : {}) },
        }),
      ),
    onSuccess: () => {
      setName('');
      void refresh();
    },
  });
  const restore = useMutation({
    mutationFn: (template: string) => unwrap(api.POST('/v1/capsules', { body: { template } })),
    onSuccess: (capsule) => {
      void client.invalidateQueries({ queryKey: ['capsules'], exact: true });
      void navigate(`/capsules/${capsule.id}`);
    },
  });
  const remove = useMutation({
    mutationFn: (template: string) =>
      unwrap(api.DELETE('/v1/snapshots/{name}', { params: { path: { name: template } } })),
    onSuccess: refresh,
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    take.mutate();
  };
  return (
    <Section title="Snapshots">
      {props.running ? (
        <form onSubmit={submit} className="file-actions">
          <TextField
            label="Snapshot name"
            placeholder="chosen for you"
            hint="Lower case letters, digits, '.', '_' and '-'. The sandbox freezes for a moment, then runs on."
            value={name}
            onChange={(e) => setName(e.target.value)}
          />
          <Button type="submit" variant="primary" busy={take.isPending}>
            Take a snapshot
          </Button>
        </form>
      ) : (
        <p className="muted">A snapshot is taken of a running sandbox.</p>
      )}
      <ErrorNote error={take.error ?? restore.error ?? remove.error} />
      <DataTable
        list={snapshots}
        what="snapshots"
        rowKey={(t) => t.name}
        empty={
          <Empty title="No snapshots of this sandbox.">
            Take one to keep its files and installed tools; a new sandbox can start from it.
          </Empty>
        }
        columns={[
          { header: 'Name', cell: (t) => <code>{t.name}</code> },
          { header: 'Size', cell: (t) => size(t.size_bytes) },
          { header: 'Taken', cell: (t) => when(t.created_at) },
          {
            header: 'Actions',
            quietHeader: true,
            cell: (t) => (
              <div className="actions">
                <Button
                  aria-label={`Restore ${t.name} into a new sandbox`}
                  busy={restore.isPending && restore.variables === t.name}
                  onClick={() => restore.mutate(t.name)}
                >
                  Restore
                </Button>
                <ConfirmButton
                  label="Delete"
                  name={t.name}
                  question={`Delete the snapshot ${t.name}? Sandboxes started from it keep their copy.`}
                  busy={remove.isPending && remove.variables === t.name}
                  onConfirm={() => remove.mutate(t.name)}
                />
              </div>
            ),
          },
        ]}
      />
    </Section>
  );
}
