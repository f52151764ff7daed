CREATE TABLE "workspace_events" (
	"workspace_id" text NOT NULL,
	"seq" integer NOT NULL,
	"team_id" text NOT NULL,
	"task_id" text,
	"type" text NOT NULL,
	"payload" jsonb NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	CONSTRAINT "workspace_events_workspace_id_seq_pk" PRIMARY KEY("workspace_id","seq")
);
--> statement-breakpoint
CREATE TABLE "workspaces" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"agent_id" text NOT NULL,
	"agent_version" integer NOT NULL,
	"name" text,
	"status" text NOT NULL,
	"capsule_id" text,
	"run_id" text NOT NULL,
	"messages" jsonb NOT NULL,
	"current_task_id" text,
	"turns" integer DEFAULT 0 NOT NULL,
	"idle_timeout_sec" integer NOT NULL,
	"session_ttl_sec" integer NOT NULL,
	"model_override" text,
	"last_run_model" text,
	"starred" boolean DEFAULT false NOT NULL,
	"archived" boolean DEFAULT false NOT NULL,
	"event_seq" integer DEFAULT 0 NOT NULL,
	"last_active_at" timestamp with time zone NOT NULL,
	"paused_at" timestamp with time zone,
	"ended_at" timestamp with time zone,
	"created_by" text,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "workspace_events" ADD CONSTRAINT "workspace_events_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workspaces" ADD CONSTRAINT "workspaces_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "workspace_events_task_idx" ON "workspace_events" USING btree ("workspace_id","task_id","seq");--> statement-breakpoint
CREATE INDEX "workspaces_team_idx" ON "workspaces" USING btree ("team_id","id");--> statement-breakpoint
CREATE INDEX "workspaces_status_idx" ON "workspaces" USING btree ("status","last_active_at");