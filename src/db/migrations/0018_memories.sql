CREATE TABLE "memories" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"agent_id" text NOT NULL,
	"content" text NOT NULL,
	"metadata" jsonb NOT NULL,
	"task_id" text,
	"created_by" text,
	"search_vector" "tsvector" GENERATED ALWAYS AS (to_tsvector('english', "content")) STORED NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "memories" ADD CONSTRAINT "memories_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "memories_agent_idx" ON "memories" USING btree ("team_id","agent_id","id");--> statement-breakpoint
CREATE INDEX "memories_search_idx" ON "memories" USING gin ("search_vector");