// The two ways `paddock backup` and `paddock restore` stop on purpose
// (docs/cli.md "backup and restore" lists their exit codes).

/** The archive is not a Paddock backup, or is cut short or damaged: exit 1. */
export class CorruptArchiveError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CorruptArchiveError';
  }
}

/**
 * The command would do harm, so it does nothing: the data dir is in use or
 * not empty, or the archive is from a newer Paddock than this one. Exit 6.
 */
export class RefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RefusedError';
  }
}
