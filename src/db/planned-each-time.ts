/**
 * Begins a statement that the embedded database never names (see
 * pglite-statements.ts): it is parsed and planned on every run, as an
 * unnamed statement always is on Postgres. For a statement whose best plan
 * depends on its values: a named statement's plan becomes generic after a
 * few runs, and a generic plan cannot fold a value into the query (memory
 * search's text query, which its index needs folded, measured 37 ms p95
 * named against 20 ms unnamed on 100 000 memories).
 */
export const PLANNED_EACH_TIME = '/* planned each time */ ';
