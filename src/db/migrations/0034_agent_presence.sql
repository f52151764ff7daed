ALTER TABLE "agents" ADD COLUMN "hosted" boolean DEFAULT true NOT NULL;--> statement-breakpoint
ALTER TABLE "agents" ADD COLUMN "heartbeat_interval_sec" integer DEFAULT 30 NOT NULL;--> statement-breakpoint
ALTER TABLE "agents" ADD COLUMN "presence_status" text;--> statement-breakpoint
ALTER TABLE "agents" ADD COLUMN "current_job" text;--> statement-breakpoint
ALTER TABLE "agents" ADD COLUMN "last_heartbeat_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "agents" ADD COLUMN "offline_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "agents" ADD COLUMN "paused_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "agents_presence_idx" ON "agents" USING btree ("last_heartbeat_at") WHERE offline_at is null and last_heartbeat_at is not null and deleted_at is null;