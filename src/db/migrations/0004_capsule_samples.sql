CREATE TABLE "capsule_samples" (
	"team_id" text NOT NULL,
	"sampled_at" timestamp with time zone NOT NULL,
	"running" integer NOT NULL,
	"vcpus" integer NOT NULL,
	"memory_mb" integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "capsule_samples_key" ON "capsule_samples" USING btree ("team_id","sampled_at");--> statement-breakpoint
CREATE INDEX "capsule_samples_at_idx" ON "capsule_samples" USING btree ("sampled_at");