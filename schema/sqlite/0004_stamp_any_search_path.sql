-- mailtable schema 4 (SQLite): nothing to change. PostgreSQL's step 4
-- makes its change-stamp trigger independent of the writer's search_path;
-- SQLite has neither (postgres/0004).
SELECT 1;
