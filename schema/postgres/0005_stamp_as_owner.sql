-- mailtable schema 5 (PostgreSQL): the stamp trigger ran with the
-- WRITER's privileges, so a role that may write users but not
-- mailtable_changes (the CLI run as a role granted INSERT, UPDATE and
-- DELETE on users, a web panel, a psql user) had every write refused:
-- permission denied for table mailtable_changes. The function now runs
-- as its owner, the tables' owner who made it. Its search_path takes
-- nothing from the writer's schemas (PostgreSQL manual, CREATE FUNCTION,
-- "Writing SECURITY DEFINER Functions Safely"); it names the stamp table
-- in the schema of the table it fires on (schema 4).
ALTER FUNCTION mailtable_stamp_change() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
