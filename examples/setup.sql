-- A small demo schema for pgoutput-stream.
-- Needs wal_level = logical on the server:
--   ALTER SYSTEM SET wal_level = logical;   -- then restart PostgreSQL
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
-- Rows of orders arrive with the whole old row on update and delete.
ALTER TABLE orders REPLICA IDENTITY FULL;
CREATE PUBLICATION demo_pub FOR TABLE customers, orders;
