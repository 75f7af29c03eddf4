-- mailtable schema 3 (SQLite): nothing to add. The daemons' answer cache
-- reads SQLite's own change counter (PRAGMA data_version, which every
-- commit by any connection advances) and the file's identity; PostgreSQL
-- needs a table and a trigger for the same (postgres/0003).
SELECT 1;
