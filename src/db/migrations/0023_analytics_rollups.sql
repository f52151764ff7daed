CREATE TABLE "analytics_daily" (
	"team_id" text NOT NULL,
	"bucket_start" timestamp with time zone NOT NULL,
	"agent_id" text NOT NULL,
	"agent_version" integer DEFAULT 0 NOT NULL,
	"provider" text DEFAULT '' NOT NULL,
	"model" text DEFAULT '' NOT NULL,
	"request_count" bigint DEFAULT 0 NOT NULL,
	"success_count" bigint DEFAULT 0 NOT NULL,
	"error_count" bigint DEFAULT 0 NOT NULL,
	"timeout_count" bigint DEFAULT 0 NOT NULL,
	"budget_blocked_count" bigint DEFAULT 0 NOT NULL,
	"policy_blocked_count" bigint DEFAULT 0 NOT NULL,
	"failover_count" bigint DEFAULT 0 NOT NULL,
	"failover_attempts" bigint DEFAULT 0 NOT NULL,
	"input_tokens" bigint DEFAULT 0 NOT NULL,
	"output_tokens" bigint DEFAULT 0 NOT NULL,
	"cache_read_tokens" bigint DEFAULT 0 NOT NULL,
	"cache_creation_tokens" bigint DEFAULT 0 NOT NULL,
	"cost_micros" bigint DEFAULT 0 NOT NULL,
	"sandbox_cost_micros" bigint DEFAULT 0 NOT NULL,
	"latency_count" bigint DEFAULT 0 NOT NULL,
	"latency_sum_ms" bigint DEFAULT 0 NOT NULL,
	"latency_hist" bigint[] NOT NULL
);
--> statement-breakpoint
CREATE TABLE "analytics_hourly" (
	"team_id" text NOT NULL,
	"bucket_start" timestamp with time zone NOT NULL,
	"agent_id" text NOT NULL,
	"agent_version" integer DEFAULT 0 NOT NULL,
	"provider" text DEFAULT '' NOT NULL,
	"model" text DEFAULT '' NOT NULL,
	"request_count" bigint DEFAULT 0 NOT NULL,
	"success_count" bigint DEFAULT 0 NOT NULL,
	"error_count" bigint DEFAULT 0 NOT NULL,
	"timeout_count" bigint DEFAULT 0 NOT NULL,
	"budget_blocked_count" bigint DEFAULT 0 NOT NULL,
	"policy_blocked_count" bigint DEFAULT 0 NOT NULL,
	"failover_count" bigint DEFAULT 0 NOT NULL,
	"failover_attempts" bigint DEFAULT 0 NOT NULL,
	"input_tokens" bigint DEFAULT 0 NOT NULL,
	"output_tokens" bigint DEFAULT 0 NOT NULL,
	"cache_read_tokens" bigint DEFAULT 0 NOT NULL,
	"cache_creation_tokens" bigint DEFAULT 0 NOT NULL,
	"cost_micros" bigint DEFAULT 0 NOT NULL,
	"sandbox_cost_micros" bigint DEFAULT 0 NOT NULL,
	"latency_count" bigint DEFAULT 0 NOT NULL,
	"latency_sum_ms" bigint DEFAULT 0 NOT NULL,
	"latency_hist" bigint[] NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "analytics_daily_key" ON "analytics_daily" USING btree ("team_id","bucket_start","agent_id","agent_version","provider","model");--> statement-breakpoint
CREATE UNIQUE INDEX "analytics_hourly_key" ON "analytics_hourly" USING btree ("team_id","bucket_start","agent_id","agent_version","provider","model");--> statement-breakpoint
CREATE INDEX "runs_team_started_idx" ON "runs" USING btree ("team_id","started_at");--> statement-breakpoint
CREATE INDEX "tasks_team_created_idx" ON "tasks" USING btree ("team_id","created_at");--> statement-breakpoint
CREATE INDEX "tasks_run_idx" ON "tasks" USING btree ("run_id");