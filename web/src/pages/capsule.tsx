import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useRef, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import { Chart, clockLabel, short } from '../chart.tsx';
import {
  Badge,
  Button,
  ConfirmButton,
  DataTable,
  Empty,
  ErrorNote,
  Loading,
  Page,
  Section,
  SelectField,
  TextField,
} from '../ui.tsx';
import { CapsuleSnapshots } from './capsule-snapshots.tsx';
import { CapsuleTerminal } from './terminal.tsx';
import './pages-extra.css';

const MOVING = new Set(['pending', 'starting', 'pausing', 'resuming', 'stopping']);
const ENDED = new Set(['stopped', 'missing', 'error']);

export function CapsulePage() {
  const { id } = useParams();
  const client = useQueryClient();
  const navigate = useNavigate();
  const capsule = useQuery({
    queryKey: ['capsules', id],
    queryFn: () => unwrap(api.GET('/v1/capsules/{id}', { params: { path: { id: id! } } })),
    // Until it settles (starting → running, pausing → paused…), ask again.
    refetchInterval: (query) => (MOVING.has(query.state.data?.status ?? '') ? 1_000 : false),
  });
  // The capsule and the list, not its files: a pausing or stopping capsule answers files calls 409.
  const refresh = () =>
    Promise.all([
      client.invalidateQueries({ queryKey: ['capsules', id], exact: true }),
      client.invalidateQueries({ queryKey: ['capsules'], exact: true }),
    ]);
  const params = { params: { path: { id: id! } } };
  const pause = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/capsules/{id}/pause', params)),
    onSuccess: refresh,
  });
  const resume = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/capsules/{id}/resume', params)),
    onSuccess: refresh,
  });
  const remove = useMutation({
    mutationFn: () => unwrap(api.DELETE('/v1/capsules/{id}', params)),
    onSuccess: () => {
      client.removeQueries({ queryKey: ['capsules', id] });
      void client.invalidateQueries({ queryKey: ['capsules'], exact: true });
      void navigate('/capsules');
    },
  });
  if (capsule.isPending) return <Loading what="the sandbox" />;
  if (capsule.isError)
    return (
      <Page title="Sandbox">
        <ErrorNote error={capsule.error} />
        <Link to="/capsules">Back to the sandboxes</Link>
      </Page>
    );
  const c = capsule.data;
  const running = c.status === 'running';
  return (
    <Page
      title={`Sandbox ${c.id}`}
      actions={
        <>
          {running ? (
            <Button busy={pause.isPending} onClick={() => pause.mutate()}>
              Pause
            </Button>
          ) : null}
          {c.status === 'paused' ? (
            <Button busy={resume.isPending} onClick={() => resume.mutate()}>
              Resume
            </Button>
          ) : null}
          {ENDED.has(c.status) ? null : (
            <ConfirmButton
              label="Delete"
              name={c.id}
              question="Delete this sandbox? Its processes stop and its files are removed."
              busy={remove.isPending}
              onConfirm={() => remove.mutate()}
            />
          )}
        </>
      }
    >
      <div className="status-line" role="status" aria-live="polite">
        <Badge status={c.status} />
        {MOVING.has(c.status) ? <span className="spinner" aria-hidden="true" /> : null}
        <span className="muted">
          {c.template} · {c.vcpus} vCPU · {c.memory_mb} MB · {c.active_seconds} s running
          {c.status_reason ? ` · ${c.status_reason}` : ''}
        </span>
      </div>
      <ErrorNote error={pause.error ?? resume.error ?? remove.error} />
      <Section title="Terminal">
        {running ? (
          <CapsuleTerminal capsuleId={c.id} />
        ) : (
          <Empty title="The terminal needs a running sandbox.">
            {c.status === 'paused'
              ? 'Resume it to open a shell.'
              : ENDED.has(c.status)
                ? 'This sandbox has ended; start a new one from Sandboxes.'
                : 'It is on its way; the shell opens once it runs.'}
          </Empty>
        )}
      </Section>
      {running || c.status === 'paused' ? (
        // Once it is being deleted, its metrics are not asked for again (they would be a 404).
        <Metrics capsuleId={c.id} live={running && !remove.isPending} />
      ) : null}
      {running ? <Files capsuleId={c.id} /> : null}
      <CapsuleSnapshots capsuleId={c.id} running={running} />
      <dl className="facts">
        <dt>Created</dt>
        <dd>{when(c.created_at)}</dd>
        <dt>Last active</dt>
        <dd>{when(c.last_active_at)}</dd>
        <dt>Pauses after</dt>
        <dd>{c.timeout_sec === 0 ? 'never' : `${c.timeout_sec} s idle`}</dd>
      </dl>
    </Page>
  );
}

const METRIC_RANGES = ['5m', '10m', '1h', '2h', '6h', '12h', '24h'] as const;
type MetricRange = (typeof METRIC_RANGES)[number];
const MB = 1024 * 1024;

/** CPU, memory and disk over a range, from the host's samples (every 2 s, averaged for longer ranges). */
function Metrics(props: { capsuleId: string; live: boolean }) {
  const [range, setRange] = useState<MetricRange>('10m');
  const metrics = useQuery({
    queryKey: ['capsules', props.capsuleId, 'metrics', range],
    queryFn: () =>
      unwrap(
        api.GET('/v1/capsules/{id}/metrics', {
          params: { path: { id: props.capsuleId }, query: { range } },
        }),
      ),
    refetchInterval: props.live ? 5_000 : false,
  });
  const points = metrics.data?.points ?? [];
  const labels = points.map((p) => new Date(p.timestamp_unix).toISOString());
  const empty = (
    <Empty title="No samples yet.">
      The host samples a running sandbox every 2 seconds; they appear shortly.
    </Empty>
  );
  const chart = (title: string, unit: string, values: number[], format: (v: number) => string) => (
    <Chart
      title={title}
      kind="area"
      labels={labels}
      series={[{ name: unit, values }]}
      yLabel={unit}
      xLabel="Time"
      format={format}
      formatLabel={clockLabel}
      empty={empty}
    />
  );
  const mb = (v: number) => `${short(v)} MB`;
  return (
    <Section
      title="Metrics"
      actions={
        <SelectField
          label="Metrics range"
          quietLabel
          value={range}
          onChange={(e) => setRange(e.target.value as MetricRange)}
          options={METRIC_RANGES.map((r) => ({ value: r, label: `Last ${r}` }))}
        />
      }
    >
      <ErrorNote error={metrics.error} />
      {metrics.isPending ? <Loading what="metrics" /> : null}
      {metrics.data ? (
        <div className="charts">
          <div>
            <h3>CPU</h3>
            {chart(
              'CPU use, % of the sandbox’s vCPUs',
              '%',
              points.map((p) => p.cpu_pct),
              (v) => `${short(v)}%`,
            )}
          </div>
          <div>
            <h3>Memory</h3>
            {chart(
              'Memory in use',
              'MB',
              points.map((p) => p.mem_bytes / MB),
              mb,
            )}
          </div>
          <div>
            <h3>Disk</h3>
            {chart(
              'Disk used in the writable layer',
              'MB',
              points.map((p) => p.disk_bytes / MB),
              mb,
            )}
          </div>
        </div>
      ) : null}
    </Section>
  );
}

function Files(props: { capsuleId: string }) {
  const client = useQueryClient();
  const [dir, setDir] = useState('/home/user');
  const [shown, setShown] = useState('/home/user');
  const fileInput = useRef<HTMLInputElement>(null);
  const path = { params: { path: { id: props.capsuleId } } };
  const files = useQuery({
    queryKey: ['capsules', props.capsuleId, 'files', shown],
    queryFn: async () => {
      const listed = await unwrap(
        api.POST('/v1/capsules/{id}/files/list', { ...path, body: { path: shown } }),
      );
      return { data: listed.entries };
    },
  });
  const upload = useMutation({
    mutationFn: async (file: File) => {
      const form = new FormData();
      form.append('path', `${shown.replace(/\/+$/, '')}/${file.name}`);
      form.append('file', file);
      await unwrap(
        api.POST('/v1/capsules/{id}/files/write', {
          ...path,
          body: form as never,
          // The browser writes the multipart body and its boundary.
          bodySerializer: (body) => body as unknown as FormData,
        }),
      );
    },
    onSuccess: () => {
      if (fileInput.current) fileInput.current.value = '';
      void client.invalidateQueries({ queryKey: ['capsules', props.capsuleId, 'files'] });
    },
  });
  const download = useMutation({
    mutationFn: async (file: string) => {
      const blob = await unwrap(
        api.POST('/v1/capsules/{id}/files/read', { ...path, body: { path: file }, parseAs: 'blob' }),
      );
      const link = document.createElement('a');
      link.href = URL.createObjectURL(blob as unknown as Blob);
      link.download = file.split('/').pop() ?? 'file';
      link.click();
      URL.revokeObjectURL(link.href);
    },
  });
  const onOpen = (e: FormEvent) => {
    e.preventDefault();
    setShown(dir);
  };
  return (
    <Section title="Files">
      <form onSubmit={onOpen} className="file-actions">
        <TextField label="Folder" value={dir} onChange={(e) => setDir(e.target.value)} />
        <Button type="submit">Open</Button>
        <Button onClick={() => void files.refetch()}>Refresh</Button>
      </form>
      <div className="file-actions">
        <label htmlFor="upload-file">Upload to {shown}</label>
        <input
          id="upload-file"
          ref={fileInput}
          type="file"
          onChange={(e) => {
            const file = e.target.files?.[0];
            if (file) upload.mutate(file);
          }}
        />
        {upload.isPending ? <span className="spinner" aria-hidden="true" /> : null}
      </div>
      <ErrorNote error={upload.error ?? download.error} />
      <DataTable
        list={files}
        what="files"
        rowKey={(f) => f.path}
        empty={
          <Empty title="This folder is empty.">Upload a file above, or write one from the terminal.</Empty>
        }
        columns={[
          {
            header: 'Name',
            cell: (f) =>
              f.type === 'directory' ? (
                <button
                  type="button"
                  className="link-button"
                  onClick={() => {
                    setDir(f.path);
                    setShown(f.path);
                  }}
                >
                  {f.name}/
                </button>
              ) : (
                f.name
              ),
          },
          { header: 'Size', cell: (f) => (f.type === 'file' ? `${f.size} B` : '—') },
          { header: 'Modified', cell: (f) => new Date(f.modified_at * 1000).toLocaleString() },
          {
            header: 'Actions',
            quietHeader: true,
            cell: (f) =>
              f.type === 'file' ? (
                <Button aria-label={`Download ${f.name}`} onClick={() => download.mutate(f.path)}>
                  Download
                </Button>
              ) : null,
          },
        ]}
      />
    </Section>
  );
}
