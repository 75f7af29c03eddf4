-- mailtable schema 4 (PostgreSQL): the stamp trigger of schema 3 names
-- mailtable_changes through the WRITER's search_path, so a client whose
-- search_path lacks the schema of the tables (`UPDATE mt.users ...` from
-- a session on `public`, or a tool that sets its own) had every write to
-- users refused: relation "mailtable_changes" does not exist. The stamp
-- table lives next to users (both made by `mailtable migrate` in the same
-- schema): the trigger now names it in the schema of the table it fires
-- on (TG_TABLE_SCHEMA, PostgreSQL manual "Triggers on Data Changes").
CREATE OR REPLACE FUNCTION mailtable_stamp_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format(
    'UPDATE %I.mailtable_changes SET stamp = txid_current() '
    'WHERE id = 1 AND stamp <> txid_current()', TG_TABLE_SCHEMA);
  RETURN NULL;
END
$$;
