ALTER TABLE "tasks" ADD COLUMN "mode" text DEFAULT 'batch' NOT NULL;--> statement-breakpoint
ALTER TABLE "tasks" ADD COLUMN "workspace_id" text;