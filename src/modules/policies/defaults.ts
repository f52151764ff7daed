// The policy document's defaults, with no imports: spec.ts checks them against
// the schema's type (PolicySpec), and the dashboard's policy form starts a new
// policy from them and shows them as hints.

/**
 * Defaults. Stated by Rungate: approval_expiry_ms, timeout_ms,
 * connect_timeout_ms, the circuit breaker, load_balancing, the cooldown,
 * dry_run, content_logging, idle timeout (300 s). The rest are Paddock's
 * choices: empty rule lists (= no restriction), no limits, alert and continue,
 * retry on 429/5xx, 3 attempts, fail over first on a 429, a 300 s grouping window.
 */
export const POLICY_DEFAULTS = {
  budget: {
    alert_threshold_tokens: null,
    alert_threshold_usd: null,
    hard_limit_tokens: null,
    hard_limit_usd: null,
    max_cost_per_hour_usd: null,
    on_alert_threshold: 'continue_and_alert' as const,
  },
  allowed_models: [],
  blocked_models: [],
  allowed_tools: [],
  blocked_tools: [],
  require_approval: [],
  approval_expiry_ms: 28_800_000,
  rate_limits: { max_requests_per_minute: null, max_tokens_per_minute: null },
  routing: {
    default_chain: [],
    model_routes: [],
    timeout_ms: 120_000,
    connect_timeout_ms: 10_000,
    retry_on: [429, 500, 502, 503, 504, 529],
    max_retries: 3,
    on_rate_limit: 'failover_first' as const,
    load_balancing: 'failover' as const,
    circuit_breaker: { failure_threshold: 5, recovery_timeout_ms: 30_000, max_recovery_timeout_ms: 600_000 },
    routing_preference: 'default' as const,
  },
  model_mapping: {},
  default_model: null,
  model_override: null,
  runaway_prevention: { enabled: false, max_steps_per_run: null },
  implicit_run_grouping: {
    time_window_seconds: 300,
    run_idle_timeout_seconds: 300,
    force_stop_cooldown_minutes: 60,
  },
  outcome_defaults: null,
  dry_run: false,
  content_logging: 'default' as const,
};

/** Why a run ended: the keys of outcome_defaults. */
export const ENDED_REASONS = [
  'agent_signaled',
  'agent_complete_all',
  'cost_limit',
  'token_limit',
  'alert_threshold_stop',
  'idle_auto_complete',
  'idle_timeout',
  'new_run_requested',
  'admin_stopped',
  'admin_completed',
] as const;
