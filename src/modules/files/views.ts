import type { FileRow } from './repo.ts';

export function fileView(row: FileRow) {
  return {
    id: row.id,
    team_id: row.teamId,
    filename: row.filename,
    content_type: row.contentType,
    size_bytes: row.sizeBytes ?? 0,
    sha256: row.sha256 ?? '',
    created_at: row.createdAt.toISOString(),
  };
}
export type FileView = ReturnType<typeof fileView>;
