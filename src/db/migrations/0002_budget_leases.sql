CREATE TABLE "budget_leases" (
	"id" text PRIMARY KEY NOT NULL,
	"holder" text NOT NULL,
	"scope" text NOT NULL,
	"team_id" text NOT NULL,
	"run_id" text,
	"agent_id" text NOT NULL,
	"policy_id" text NOT NULL,
	"hour_start" timestamp with time zone,
	"amount_micros" bigint NOT NULL,
	"tokens" bigint NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"renewed_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
DROP TABLE "budget_reservations" CASCADE;--> statement-breakpoint
CREATE INDEX "budget_leases_holder_idx" ON "budget_leases" USING btree ("holder");--> statement-breakpoint
CREATE INDEX "budget_leases_renewed_idx" ON "budget_leases" USING btree ("renewed_at");