CREATE TABLE "responses" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"agent_id" text NOT NULL,
	"run_id" text,
	"step_id" text,
	"model" text NOT NULL,
	"status" text NOT NULL,
	"input" jsonb NOT NULL,
	"output" jsonb NOT NULL,
	"usage" jsonb,
	"instructions" text,
	"metadata" jsonb NOT NULL,
	"params" jsonb NOT NULL,
	"incomplete_details" jsonb,
	"previous_response_id" text,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "responses" ADD CONSTRAINT "responses_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "responses_team_agent_idx" ON "responses" USING btree ("team_id","agent_id","id");