CREATE TABLE "host_tokens" (
	"id" text PRIMARY KEY NOT NULL,
	"host_id" text NOT NULL,
	"kind" text NOT NULL,
	"hash" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"used_at" timestamp with time zone,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "hosts" ADD COLUMN "control_token" text;--> statement-breakpoint
ALTER TABLE "host_tokens" ADD CONSTRAINT "host_tokens_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "host_tokens_hash_key" ON "host_tokens" USING btree ("hash");--> statement-breakpoint
CREATE INDEX "host_tokens_host_idx" ON "host_tokens" USING btree ("host_id");