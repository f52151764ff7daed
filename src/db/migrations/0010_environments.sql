CREATE TABLE "environment_versions" (
	"id" text PRIMARY KEY NOT NULL,
	"environment_id" text NOT NULL,
	"team_id" text NOT NULL,
	"version" integer NOT NULL,
	"base" text NOT NULL,
	"setup_commands" jsonb NOT NULL,
	"pip_packages" jsonb NOT NULL,
	"npm_packages" jsonb NOT NULL,
	"env_vars" jsonb NOT NULL,
	"network_allow" jsonb NOT NULL,
	"status" text NOT NULL,
	"template_name" text,
	"build_log" text DEFAULT '' NOT NULL,
	"error" jsonb,
	"build_started_at" timestamp with time zone,
	"build_finished_at" timestamp with time zone,
	"created_by" text,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "environments" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"name" text NOT NULL,
	"description" text,
	"current_version" integer NOT NULL,
	"forked_from" text,
	"created_by" text,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	"archived_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "environment_versions" ADD CONSTRAINT "environment_versions_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "environments" ADD CONSTRAINT "environments_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "environment_versions_env_version_key" ON "environment_versions" USING btree ("environment_id","version");--> statement-breakpoint
CREATE INDEX "environment_versions_status_idx" ON "environment_versions" USING btree ("status","updated_at");--> statement-breakpoint
CREATE UNIQUE INDEX "environments_team_name_key" ON "environments" USING btree ("team_id","name") WHERE archived_at is null;--> statement-breakpoint
CREATE INDEX "environments_team_idx" ON "environments" USING btree ("team_id","id");