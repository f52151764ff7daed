CREATE TABLE "capsule_usage" (
	"team_id" text NOT NULL,
	"day" text NOT NULL,
	"cpu_seconds" bigint DEFAULT 0 NOT NULL,
	"vcpu_seconds" bigint DEFAULT 0 NOT NULL,
	"ram_mb_seconds" bigint DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "capsules" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"host_id" text,
	"status" text NOT NULL,
	"status_reason" text,
	"template" text NOT NULL,
	"vcpus" integer NOT NULL,
	"memory_mb" integer NOT NULL,
	"disk_size_mb" integer NOT NULL,
	"timeout_sec" integer NOT NULL,
	"network_allow" jsonb,
	"metadata" jsonb NOT NULL,
	"isolation" text,
	"created_by" text,
	"created_at" timestamp with time zone NOT NULL,
	"started_at" timestamp with time zone,
	"last_active_at" timestamp with time zone,
	"active_seconds" bigint DEFAULT 0 NOT NULL,
	"running_since" timestamp with time zone,
	"ended_at" timestamp with time zone,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "hosts" (
	"id" text PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"team_id" text,
	"status" text NOT NULL,
	"provider" text,
	"availability_zone" text,
	"arch" text,
	"cpu_cores" integer,
	"memory_mb" integer,
	"disk_gb" integer,
	"address" text,
	"isolation" text,
	"tags" jsonb NOT NULL,
	"last_heartbeat_at" timestamp with time zone,
	"created_by" text,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "templates" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text,
	"name" text NOT NULL,
	"type" text NOT NULL,
	"source_capsule_id" text,
	"vcpus" integer,
	"memory_mb" integer,
	"size_bytes" bigint NOT NULL,
	"host_id" text,
	"path" text,
	"metadata" jsonb NOT NULL,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "capsules" ADD CONSTRAINT "capsules_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "capsules" ADD CONSTRAINT "capsules_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "hosts" ADD CONSTRAINT "hosts_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "templates" ADD CONSTRAINT "templates_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "templates" ADD CONSTRAINT "templates_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "capsule_usage_key" ON "capsule_usage" USING btree ("team_id","day");--> statement-breakpoint
CREATE INDEX "capsules_team_idx" ON "capsules" USING btree ("team_id","id");--> statement-breakpoint
CREATE INDEX "capsules_host_idx" ON "capsules" USING btree ("host_id","status");--> statement-breakpoint
CREATE INDEX "capsules_live_idx" ON "capsules" USING btree ("status","last_active_at") WHERE status in ('starting', 'running', 'pausing', 'paused', 'resuming', 'stopping');--> statement-breakpoint
CREATE INDEX "hosts_status_idx" ON "hosts" USING btree ("status");--> statement-breakpoint
CREATE UNIQUE INDEX "templates_team_name_key" ON "templates" USING btree ("team_id","name") WHERE team_id is not null;--> statement-breakpoint
CREATE UNIQUE INDEX "templates_platform_name_key" ON "templates" USING btree ("name") WHERE team_id is null;