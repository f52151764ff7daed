CREATE TABLE "billing_accounts" (
	"team_id" text PRIMARY KEY NOT NULL,
	"stripe_customer_id" text,
	"plan_id" text,
	"subscription_id" text,
	"subscription_status" text,
	"current_period_end" timestamp with time zone,
	"subscription_event_at" timestamp with time zone,
	"auto_top_up_enabled" boolean DEFAULT false NOT NULL,
	"auto_top_up_threshold" bigint,
	"auto_top_up_pack_id" text,
	"auto_top_up_monthly_cap_cents" integer,
	"auto_top_up_monthly_cap_credits" bigint,
	"top_up_state" text DEFAULT 'armed' NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	CONSTRAINT "billing_accounts_stripe_customer_id_unique" UNIQUE("stripe_customer_id")
);
--> statement-breakpoint
CREATE TABLE "billing_stripe_events" (
	"event_id" text PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"team_id" text,
	"processed_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "billing_top_ups" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"pack_id" text NOT NULL,
	"credits" bigint NOT NULL,
	"amount_cents" integer NOT NULL,
	"payment_intent_id" text,
	"status" text NOT NULL,
	"error" text,
	"created_at" timestamp with time zone NOT NULL,
	"settled_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "billing_accounts" ADD CONSTRAINT "billing_accounts_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "billing_top_ups" ADD CONSTRAINT "billing_top_ups_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "billing_top_ups_team_idx" ON "billing_top_ups" USING btree ("team_id","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "billing_top_ups_payment_intent" ON "billing_top_ups" USING btree ("payment_intent_id");