-- mailtable schema 5 (PostgreSQL): the stamp trigger ran with the
-- WRITER's privileges, so a role that may write users but not
-- mailtable_changes (the CLI run as a role granted INSERT, UPDATE and
-- DELETE on users, a web panel, a psql user) had every write refused:
-- permission denied for table mailtable_changes. The function now runs
-- as its owner, the tables' owner who made it. Its search_path takes
-- nothing from the writer's schemas (PostgreSQL manual, CREATE FUNCTION,
-- "Writing SECURITY DEFINER Functions Safely"); it names the stamp table
-- in the schema of the table it fires on (schema 4).
--
-- And no one else may attach it: a role that could put it on a table of
-- its own, next to a `mailtable_changes` of its own with a trigger of its
-- own, would run that trigger as the owner. CREATE TRIGGER needs EXECUTE
-- on the function; a trigger that exists fires whoever writes (PostgreSQL
-- manual, CREATE TRIGGER), so the writers above keep working.
ALTER FUNCTION mailtable_stamp_change() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION mailtable_stamp_change() FROM PUBLIC;
