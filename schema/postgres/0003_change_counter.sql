-- mailtable schema 3 (PostgreSQL): a change stamp for the daemons' answer
-- cache. Every statement that writes `users`, from any client (the CLI,
-- psql, another host), records the id of its transaction here; a daemon
-- compares the stamp before serving a cached answer, so a committed change
-- is seen within the cache's check interval. Statement-level: a bulk
-- import rewrites the row once per transaction (the WHERE clause), not
-- once per row. Readers need SELECT on this table as on `users`.
CREATE TABLE IF NOT EXISTS mailtable_changes (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  stamp BIGINT NOT NULL
);
INSERT INTO mailtable_changes (id, stamp) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE OR REPLACE FUNCTION mailtable_stamp_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE mailtable_changes SET stamp = txid_current()
    WHERE id = 1 AND stamp <> txid_current();
  RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS users_stamp_change ON users;
CREATE TRIGGER users_stamp_change
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
  FOR EACH STATEMENT EXECUTE FUNCTION mailtable_stamp_change();
