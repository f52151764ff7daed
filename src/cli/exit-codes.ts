/** The `paddock` CLI's exit codes (docs/cli.md "Exit codes"). */
export const EXIT = {
  ok: 0,
  /** Anything else: the server's error, an unreachable server, a bad saved login. */
  error: 1,
  /** A command line the CLI or the API refused (unknown command or option, a missing argument, a 400). */
  usage: 2,
  /** The object does not exist (or is another team's): the API's 404. */
  notFound: 3,
  /** Not logged in, or the token does not work or may not do this: 401 and 403. */
  auth: 4,
  /** `tasks run`: the task ended failed, or was cancelled by someone else. */
  taskFailed: 5,
  /** `backup`, `restore`: refused to act (the data dir is in use or not empty, the archive is newer than this Paddock). */
  refused: 6,
  /** Ctrl-C: `tasks run` cancelled its task (128 + SIGINT, as shells report it). */
  interrupted: 130,
  /** Whatever read stdout went away (`paddock tasks logs -f … | head`): 128 + SIGPIPE, as shells report it. */
  brokenPipe: 141,
} as const;
