-- A small demo schema for pgoutput-stream: two tables and the publication
-- `demo_pub` that the examples stream (examples/run.sh, run_with_nats.sh,
-- docker-compose.yml). Safe to run more than once:
--   psql -h localhost -U postgres -d postgres -f examples/setup.sql
--
-- The server needs wal_level = logical:
--   ALTER SYSTEM SET wal_level = logical;   -- then restart PostgreSQL
-- (docker-compose.yml starts PostgreSQL with -c wal_level=logical and runs this
-- file once, when its data volume is first created.)
CREATE TABLE IF NOT EXISTS customers (
    id      bigserial PRIMARY KEY,
    name    text NOT NULL,
    email   text,
    tags    text[],
    profile jsonb
);
CREATE TABLE IF NOT EXISTS orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint REFERENCES customers,
    total       numeric(10, 2),
    placed_at   timestamptz DEFAULT now()
);
-- customers keeps the default replica identity: updates and deletes carry the
-- primary key as `key` (and `old` on delete). orders sends the whole old row
-- on update and delete.
ALTER TABLE orders REPLICA IDENTITY FULL;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'demo_pub') THEN
        CREATE PUBLICATION demo_pub FOR TABLE customers, orders;
    END IF;
END
$$;
