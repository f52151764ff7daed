ALTER TABLE "tasks" ADD COLUMN "allowed_tools" jsonb;--> statement-breakpoint
ALTER TABLE "workspaces" ADD COLUMN "allowed_tools" jsonb;