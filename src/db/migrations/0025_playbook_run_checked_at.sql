DROP INDEX "playbook_runs_status_idx";--> statement-breakpoint
ALTER TABLE "playbook_runs" ADD COLUMN "checked_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "playbook_runs_status_idx" ON "playbook_runs" USING btree ("status","checked_at");