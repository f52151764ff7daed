import { useQuery } from '@tanstack/react-query';
import { api, unwrap, when } from '../api.ts';
import { DataTable, DownloadLink, Empty, Section } from '../ui.tsx';

/** Bytes as a reader takes them in. */
export function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/**
 * The files a task left in /workspace/outputs (GET /v1/tasks/{id}/files),
 * each a download. The list is refetched with the task (same query key prefix),
 * so files written at its end show when it ends.
 */
export function TaskFiles(props: { taskId: string; ended: boolean }) {
  const files = useQuery({
    queryKey: ['tasks', props.taskId, 'files'],
    queryFn: () => unwrap(api.GET('/v1/tasks/{id}/files', { params: { path: { id: props.taskId } } })),
  });
  const name = (path: string) => path.split('/').pop() ?? path;
  return (
    <Section title="Output files">
      <DataTable
        list={files}
        what="output files"
        rowKey={(f) => f.file_id}
        empty={
          <Empty title={props.ended ? 'This task left no files.' : 'No output files yet.'}>
            A task's files are what its agent writes to <code>/workspace/outputs</code>; ask for a file in the
            prompt to get one here.
          </Empty>
        }
        columns={[
          { header: 'File', cell: (f) => <code>{f.path}</code>, wrap: true },
          { header: 'Size', cell: (f) => size(f.size_bytes) },
          { header: 'Written', cell: (f) => when(f.created_at) },
          {
            header: 'Download',
            quietHeader: true,
            cell: (f) => (
              <DownloadLink
                href={`/v1/tasks/${encodeURIComponent(props.taskId)}/files/${encodeURIComponent(f.file_id)}`}
                name={name(f.path)}
              />
            ),
          },
        ]}
      />
    </Section>
  );
}
