CREATE TABLE "agents" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"name" text NOT NULL,
	"description" text,
	"status" text NOT NULL,
	"policy_id" text NOT NULL,
	"allowed_policies" jsonb,
	"provider_keys" jsonb NOT NULL,
	"routing_override" jsonb,
	"metadata" jsonb NOT NULL,
	"key_prefix" text NOT NULL,
	"key_hash" text NOT NULL,
	"definition" jsonb,
	"environment_id" text,
	"current_version" integer DEFAULT 1 NOT NULL,
	"created_by" text,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	"deleted_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "approvals" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"run_id" text NOT NULL,
	"step_id" text,
	"agent_id" text NOT NULL,
	"policy_id" text NOT NULL,
	"tool_name" text NOT NULL,
	"request_hash" text NOT NULL,
	"request_snapshot" jsonb,
	"status" text NOT NULL,
	"decided_by" text,
	"reason" text,
	"decided_at" timestamp with time zone,
	"expires_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "budget_reservations" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"run_id" text NOT NULL,
	"agent_id" text NOT NULL,
	"policy_id" text NOT NULL,
	"hour_start" timestamp with time zone NOT NULL,
	"amount_micros" bigint NOT NULL,
	"tokens" bigint NOT NULL,
	"model" text,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "hourly_spend" (
	"team_id" text NOT NULL,
	"agent_id" text NOT NULL,
	"policy_id" text NOT NULL,
	"hour_start" timestamp with time zone NOT NULL,
	"cost_micros" bigint DEFAULT 0 NOT NULL,
	"reserved_micros" bigint DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "ledger_entries" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"run_id" text NOT NULL,
	"step_id" text NOT NULL,
	"agent_id" text NOT NULL,
	"provider" text,
	"model" text,
	"provider_key_id" text,
	"input_tokens" bigint DEFAULT 0 NOT NULL,
	"output_tokens" bigint DEFAULT 0 NOT NULL,
	"cache_read_tokens" bigint DEFAULT 0 NOT NULL,
	"cache_creation_tokens" bigint DEFAULT 0 NOT NULL,
	"cost_micros" bigint NOT NULL,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "policies" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"name" text NOT NULL,
	"spec" jsonb NOT NULL,
	"version" integer NOT NULL,
	"created_by" text,
	"updated_by" text,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	"deleted_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "policy_versions" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"policy_id" text NOT NULL,
	"version" integer NOT NULL,
	"snapshot" jsonb NOT NULL,
	"changed_by" text,
	"changed_fields" jsonb NOT NULL,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "provider_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"name" text NOT NULL,
	"provider" text NOT NULL,
	"base_url" text,
	"sealed_key" text,
	"key_hint" text,
	"status" text NOT NULL,
	"price_overrides" jsonb,
	"last_used_at" timestamp with time zone,
	"rotated_at" timestamp with time zone,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "runs" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"agent_id" text NOT NULL,
	"policy_id" text NOT NULL,
	"policy_name" text NOT NULL,
	"policy_snapshot" jsonb NOT NULL,
	"name" text,
	"status" text NOT NULL,
	"creation_method" text NOT NULL,
	"ended_reason" text,
	"completion_reason" text,
	"outcome" text,
	"outcome_reason" text,
	"metadata" jsonb NOT NULL,
	"hard_limit_micros" bigint,
	"hard_limit_tokens" bigint,
	"alert_threshold_micros" bigint,
	"alert_threshold_tokens" bigint,
	"alert_threshold_exceeded" boolean DEFAULT false NOT NULL,
	"alert_sent_at" timestamp with time zone,
	"cost_micros" bigint DEFAULT 0 NOT NULL,
	"reserved_micros" bigint DEFAULT 0 NOT NULL,
	"reserved_tokens" bigint DEFAULT 0 NOT NULL,
	"input_tokens" bigint DEFAULT 0 NOT NULL,
	"output_tokens" bigint DEFAULT 0 NOT NULL,
	"cache_read_tokens" bigint DEFAULT 0 NOT NULL,
	"cache_creation_tokens" bigint DEFAULT 0 NOT NULL,
	"step_count" integer DEFAULT 0 NOT NULL,
	"primary_model" text,
	"has_governance_block" boolean DEFAULT false NOT NULL,
	"had_failover" boolean DEFAULT false NOT NULL,
	"force_stop_lifted_at" timestamp with time zone,
	"task_id" text,
	"last_step_at" timestamp with time zone,
	"started_at" timestamp with time zone NOT NULL,
	"ended_at" timestamp with time zone,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "steps" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"run_id" text NOT NULL,
	"agent_id" text NOT NULL,
	"type" text NOT NULL,
	"status" text NOT NULL,
	"name" text,
	"provider" text,
	"model" text,
	"provider_key_id" text,
	"streaming" boolean DEFAULT false NOT NULL,
	"request" jsonb,
	"response" jsonb,
	"input_tokens" bigint DEFAULT 0 NOT NULL,
	"output_tokens" bigint DEFAULT 0 NOT NULL,
	"cache_read_tokens" bigint DEFAULT 0 NOT NULL,
	"cache_creation_tokens" bigint DEFAULT 0 NOT NULL,
	"cost_micros" bigint DEFAULT 0 NOT NULL,
	"latency_ms" integer,
	"routed_from" text,
	"failover_attempts" integer DEFAULT 0 NOT NULL,
	"failover_context" jsonb,
	"error_kind" text,
	"error_message" text,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "agents" ADD CONSTRAINT "agents_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "agents" ADD CONSTRAINT "agents_policy_id_policies_id_fk" FOREIGN KEY ("policy_id") REFERENCES "public"."policies"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "policies" ADD CONSTRAINT "policies_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "policy_versions" ADD CONSTRAINT "policy_versions_policy_id_policies_id_fk" FOREIGN KEY ("policy_id") REFERENCES "public"."policies"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "provider_keys" ADD CONSTRAINT "provider_keys_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "runs" ADD CONSTRAINT "runs_agent_id_agents_id_fk" FOREIGN KEY ("agent_id") REFERENCES "public"."agents"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "steps" ADD CONSTRAINT "steps_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "agents_team_name_key" ON "agents" USING btree ("team_id","name") WHERE deleted_at is null;--> statement-breakpoint
CREATE UNIQUE INDEX "agents_key_hash_key" ON "agents" USING btree ("key_hash");--> statement-breakpoint
CREATE INDEX "agents_team_idx" ON "agents" USING btree ("team_id","id");--> statement-breakpoint
CREATE INDEX "agents_policy_idx" ON "agents" USING btree ("policy_id");--> statement-breakpoint
CREATE INDEX "approvals_team_idx" ON "approvals" USING btree ("team_id","id");--> statement-breakpoint
CREATE INDEX "approvals_run_idx" ON "approvals" USING btree ("run_id");--> statement-breakpoint
CREATE INDEX "budget_reservations_created_idx" ON "budget_reservations" USING btree ("created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "hourly_spend_key" ON "hourly_spend" USING btree ("agent_id","policy_id","hour_start");--> statement-breakpoint
CREATE INDEX "ledger_run_idx" ON "ledger_entries" USING btree ("run_id","id");--> statement-breakpoint
CREATE INDEX "ledger_team_idx" ON "ledger_entries" USING btree ("team_id","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "policies_team_name_key" ON "policies" USING btree ("team_id","name") WHERE deleted_at is null;--> statement-breakpoint
CREATE INDEX "policies_team_idx" ON "policies" USING btree ("team_id","id");--> statement-breakpoint
CREATE UNIQUE INDEX "policy_versions_policy_version_key" ON "policy_versions" USING btree ("policy_id","version");--> statement-breakpoint
CREATE UNIQUE INDEX "provider_keys_team_name_key" ON "provider_keys" USING btree ("team_id","name") WHERE status <> 'deleted';--> statement-breakpoint
CREATE INDEX "provider_keys_team_idx" ON "provider_keys" USING btree ("team_id","id");--> statement-breakpoint
CREATE INDEX "runs_team_idx" ON "runs" USING btree ("team_id","id");--> statement-breakpoint
CREATE INDEX "runs_agent_status_idx" ON "runs" USING btree ("agent_id","status","id");--> statement-breakpoint
CREATE INDEX "runs_running_idx" ON "runs" USING btree ("status","last_step_at") WHERE status = 'running';--> statement-breakpoint
CREATE INDEX "steps_run_idx" ON "steps" USING btree ("run_id","id");--> statement-breakpoint
CREATE INDEX "steps_team_idx" ON "steps" USING btree ("team_id","id");