ALTER TABLE "ledger_entries" ADD COLUMN "kind" text DEFAULT 'model' NOT NULL;--> statement-breakpoint
ALTER TABLE "ledger_entries" ADD COLUMN "capsule_id" text;--> statement-breakpoint
ALTER TABLE "ledger_entries" ADD COLUMN "sandbox_seconds" double precision;--> statement-breakpoint
ALTER TABLE "ledger_entries" ADD COLUMN "vcpus" double precision;--> statement-breakpoint
ALTER TABLE "ledger_entries" ADD COLUMN "memory_mb" integer;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "sandbox_cost_micros" bigint DEFAULT 0 NOT NULL;