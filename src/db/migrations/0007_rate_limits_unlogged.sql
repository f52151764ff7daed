-- Rate-limit counts are transient: without WAL a hit commits without waiting for a disk flush, so
-- the per-key row lock is held for microseconds (measured in docs/gateway.md). After a crash the
-- table is emptied, which only restarts the windows.
ALTER TABLE "rate_limit_buckets" SET UNLOGGED;
