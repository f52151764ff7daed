CREATE TABLE "queue_jobs" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"queue" text NOT NULL,
	"type" text NOT NULL,
	"payload" jsonb NOT NULL,
	"priority" integer NOT NULL,
	"status" text NOT NULL,
	"attempts" integer NOT NULL,
	"max_attempts" integer NOT NULL,
	"timeout_sec" integer NOT NULL,
	"run_at" timestamp with time zone NOT NULL,
	"lease_expires_at" timestamp with time zone,
	"worker_id" text,
	"idempotency_key" text,
	"result" jsonb,
	"error" text,
	"claimed_at" timestamp with time zone,
	"ended_at" timestamp with time zone,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "queue_jobs" ADD CONSTRAINT "queue_jobs_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "queue_jobs_idempotency_key" ON "queue_jobs" USING btree ("team_id","queue","idempotency_key");--> statement-breakpoint
CREATE INDEX "queue_jobs_waiting_idx" ON "queue_jobs" USING btree ("team_id","queue","priority" DESC NULLS LAST,"id") WHERE status = 'queued';--> statement-breakpoint
CREATE INDEX "queue_jobs_lease_idx" ON "queue_jobs" USING btree ("lease_expires_at") WHERE status = 'active';--> statement-breakpoint
CREATE INDEX "queue_jobs_list_idx" ON "queue_jobs" USING btree ("team_id","queue","id");--> statement-breakpoint
CREATE INDEX "queue_jobs_ended_idx" ON "queue_jobs" USING btree ("team_id","queue","ended_at");