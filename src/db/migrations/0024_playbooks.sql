CREATE TABLE "playbook_runs" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"playbook_id" text NOT NULL,
	"agent_id" text NOT NULL,
	"status" text NOT NULL,
	"decision" text,
	"fired_by" text NOT NULL,
	"slot_at" timestamp with time zone,
	"context" text,
	"task_id" text,
	"workspace_id" text,
	"chains_used" integer DEFAULT 0 NOT NULL,
	"turns" integer DEFAULT 0 NOT NULL,
	"cost_usd" double precision DEFAULT 0 NOT NULL,
	"next_chain_at" timestamp with time zone,
	"claimed_at" timestamp with time zone,
	"error" jsonb,
	"result_summary" text,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "playbook_scheduler" (
	"id" text PRIMARY KEY NOT NULL,
	"leader_id" text,
	"lease_until" timestamp with time zone,
	"last_tick_at" timestamp with time zone,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "playbook_scheduler_pauses" (
	"team_id" text PRIMARY KEY NOT NULL,
	"paused_by" text,
	"paused_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "playbooks" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"agent_id" text NOT NULL,
	"name" text NOT NULL,
	"description" text,
	"prompt" text NOT NULL,
	"trigger_type" text NOT NULL,
	"schedule" text,
	"timezone" text DEFAULT 'UTC' NOT NULL,
	"interval_seconds" integer,
	"enabled" boolean DEFAULT false NOT NULL,
	"chain_config" jsonb NOT NULL,
	"success_criteria" jsonb,
	"notify_on" text NOT NULL,
	"notification_channels" jsonb NOT NULL,
	"webhook_token_hash" text,
	"webhook_token_prefix" text,
	"next_run_at" timestamp with time zone,
	"last_run_at" timestamp with time zone,
	"created_by" text,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "playbook_runs" ADD CONSTRAINT "playbook_runs_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "playbook_runs" ADD CONSTRAINT "playbook_runs_playbook_id_playbooks_id_fk" FOREIGN KEY ("playbook_id") REFERENCES "public"."playbooks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "playbook_scheduler_pauses" ADD CONSTRAINT "playbook_scheduler_pauses_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "playbooks" ADD CONSTRAINT "playbooks_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "playbook_runs_slot_key" ON "playbook_runs" USING btree ("playbook_id","slot_at");--> statement-breakpoint
CREATE INDEX "playbook_runs_team_idx" ON "playbook_runs" USING btree ("team_id","id");--> statement-breakpoint
CREATE INDEX "playbook_runs_playbook_idx" ON "playbook_runs" USING btree ("playbook_id","status");--> statement-breakpoint
CREATE INDEX "playbook_runs_status_idx" ON "playbook_runs" USING btree ("status");--> statement-breakpoint
CREATE INDEX "playbooks_team_idx" ON "playbooks" USING btree ("team_id","id");--> statement-breakpoint
CREATE INDEX "playbooks_due_idx" ON "playbooks" USING btree ("enabled","next_run_at");--> statement-breakpoint
CREATE UNIQUE INDEX "playbooks_webhook_token_key" ON "playbooks" USING btree ("webhook_token_hash");