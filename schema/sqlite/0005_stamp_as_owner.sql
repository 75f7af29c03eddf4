-- mailtable schema 5 (SQLite): nothing to change. PostgreSQL's step 5
-- runs its change-stamp trigger with the tables' owner's privileges;
-- SQLite has no roles (postgres/0005).
SELECT 1;
