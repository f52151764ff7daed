CREATE TABLE "secret_versions" (
	"secret_id" text NOT NULL,
	"version" integer NOT NULL,
	"team_id" text NOT NULL,
	"changed_by_kind" text NOT NULL,
	"changed_by" text,
	"changed_at" timestamp with time zone NOT NULL,
	CONSTRAINT "secret_versions_secret_id_version_pk" PRIMARY KEY("secret_id","version")
);
--> statement-breakpoint
ALTER TABLE "secrets" ADD COLUMN "value_version" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "secret_versions" ADD CONSTRAINT "secret_versions_secret_id_secrets_id_fk" FOREIGN KEY ("secret_id") REFERENCES "public"."secrets"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "secret_versions" ADD CONSTRAINT "secret_versions_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
-- Secrets made before value history: their value as version 1, set by whoever created the secret.
INSERT INTO "secret_versions" ("secret_id", "version", "team_id", "changed_by_kind", "changed_by", "changed_at")
SELECT "id", 1, "team_id",
	CASE split_part(coalesce("created_by", ''), '_', 1)
		WHEN 'usr' THEN 'user' WHEN 'key' THEN 'api_key' WHEN 'agt' THEN 'agent' ELSE 'system' END,
	"created_by", "created_at"
FROM "secrets";
