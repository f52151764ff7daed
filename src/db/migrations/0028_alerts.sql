CREATE TABLE "alert_firings" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"rule_id" text NOT NULL,
	"rule_name" text NOT NULL,
	"condition_type" text NOT NULL,
	"agent_id" text,
	"evidence" jsonb NOT NULL,
	"fired_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "alert_rules" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"name" text NOT NULL,
	"description" text,
	"condition_type" text NOT NULL,
	"condition_config" jsonb NOT NULL,
	"agent_id" text,
	"window_seconds" integer NOT NULL,
	"cooldown_seconds" integer NOT NULL,
	"status" text NOT NULL,
	"notify_emails" jsonb NOT NULL,
	"last_evaluated_at" timestamp with time zone,
	"last_triggered_at" timestamp with time zone,
	"created_by" text,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "alert_firings" ADD CONSTRAINT "alert_firings_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "alert_rules" ADD CONSTRAINT "alert_rules_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "alert_firings_team_idx" ON "alert_firings" USING btree ("team_id","id");--> statement-breakpoint
CREATE INDEX "alert_firings_rule_idx" ON "alert_firings" USING btree ("rule_id","id");--> statement-breakpoint
CREATE UNIQUE INDEX "alert_rules_team_name_key" ON "alert_rules" USING btree ("team_id","name");--> statement-breakpoint
CREATE INDEX "alert_rules_team_idx" ON "alert_rules" USING btree ("team_id","id");--> statement-breakpoint
CREATE INDEX "alert_rules_due_idx" ON "alert_rules" USING btree ("status","last_evaluated_at");