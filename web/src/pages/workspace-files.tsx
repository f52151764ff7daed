import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useRef, useState } from 'react';
import { api, multipart, unwrap } from '../api.ts';
import {
  Button,
  ConfirmButton,
  DataTable,
  DownloadLink,
  Empty,
  ErrorNote,
  Section,
  TextField,
} from '../ui.tsx';
import { size } from './task-files.tsx';

/** A path under /workspace as the download route takes it (each segment encoded, the slashes kept). */
const filePath = (path: string) => path.split('/').map(encodeURIComponent).join('/');

/**
 * What is in the workspace's /workspace: list, upload (into a folder), download
 * (one file, or all of it as a tar.gz), delete. Listing a paused workspace
 * resumes its sandbox, so there it waits for a click; until the first turn
 * has ended its sandbox may still be starting (a listing would be a 409).
 */
export function WorkspaceFiles(props: {
  workspaceId: string;
  turns: number;
  started: boolean;
  paused: boolean;
}) {
  const [asked, setAsked] = useState(false);
  const open = !props.paused || asked;
  return (
    <Section title="Files">
      {!props.started ? (
        <Empty title="No files yet.">
          The first turn starts the sandbox; its files show here once it ends.
        </Empty>
      ) : open ? (
        <FileList workspaceId={props.workspaceId} turns={props.turns} />
      ) : (
        <Empty
          title="The sandbox is paused."
          action={<Button onClick={() => setAsked(true)}>Show the files</Button>}
        >
          Showing its files resumes it, as your next message would.
        </Empty>
      )}
    </Section>
  );
}

function FileList(props: { workspaceId: string; turns: number }) {
  const client = useQueryClient();
  // Not under ['workspaces', id]: what refetches the workspace (its events, ending it) must not
  // list the files of a sandbox that may be gone; they are listed again when a turn ends.
  const key = ['workspace-files', props.workspaceId];
  const path = { params: { path: { id: props.workspaceId } } };
  const base = `/v1/workspaces/${encodeURIComponent(props.workspaceId)}`;
  const [folder, setFolder] = useState('');
  const fileInput = useRef<HTMLInputElement>(null);
  const files = useQuery({
    queryKey: [...key, props.turns],
    queryFn: () => unwrap(api.GET('/v1/workspaces/{id}/files', path)),
    refetchOnWindowFocus: false,
  });
  const refresh = () => client.invalidateQueries({ queryKey: key });
  const upload = useMutation({
    mutationFn: (file: File) =>
      unwrap(
        api.POST('/v1/workspaces/{id}/files', {
          ...path,
          ...multipart([
            ...(folder.trim() === '' ? [] : [['path', folder.trim()] as [string, string]]),
            ['file', file],
          ]),
        }),
      ),
    onSuccess: () => {
      if (fileInput.current) fileInput.current.value = '';
      void refresh();
    },
  });
  const remove = useMutation({
    mutationFn: (file: string) =>
      unwrap(
        api.DELETE('/v1/workspaces/{id}/files/{*}', {
          params: { path: { id: props.workspaceId, '*': file } },
          // openapi-fetch reads "{*}" as an exploded parameter with no name: the path is put in here.
          pathSerializer: (pathname) =>
            pathname.replace('{id}', encodeURIComponent(props.workspaceId)).replace('{*}', filePath(file)),
        }),
      ),
    onSuccess: refresh,
  });
  return (
    <>
      <div className="file-actions">
        <TextField
          label="Upload into folder"
          placeholder="(the top of /workspace)"
          value={folder}
          onChange={(e) => setFolder(e.target.value)}
        />
        <label htmlFor="workspace-upload">Upload a file</label>
        <input
          id="workspace-upload"
          ref={fileInput}
          type="file"
          onChange={(e) => {
            const file = e.target.files?.[0];
            if (file) upload.mutate(file);
          }}
        />
        {upload.isPending ? <span className="spinner" aria-hidden="true" /> : null}
        <Button onClick={() => void files.refetch()}>Refresh</Button>
        <a className="btn btn-default" href={`${base}/archive`} download>
          Download all (.tar.gz)
        </a>
      </div>
      <ErrorNote error={upload.error ?? remove.error} />
      <DataTable
        list={files}
        what="files"
        rowKey={(f) => f.path}
        empty={
          <Empty title="/workspace is empty.">Upload a file above, or ask the agent to write one.</Empty>
        }
        columns={[
          {
            header: 'Path',
            cell: (f) => <code>{f.type === 'directory' ? `${f.path}/` : f.path}</code>,
            wrap: true,
          },
          { header: 'Size', cell: (f) => (f.type === 'file' ? size(f.size_bytes) : '—') },
          {
            header: 'Actions',
            quietHeader: true,
            cell: (f) => (
              <div className="actions">
                {f.type === 'file' ? (
                  <DownloadLink href={`${base}/files/${filePath(f.path)}`} name={f.path} />
                ) : null}
                <ConfirmButton
                  label="Delete"
                  name={f.path}
                  question={`Delete ${f.path} from /workspace?`}
                  busy={remove.isPending && remove.variables === f.path}
                  onConfirm={() => remove.mutate(f.path)}
                />
              </div>
            ),
          },
        ]}
      />
    </>
  );
}
