-- A read-only role for the ops dashboard: it can read the `ops` views and
-- write nothing at all, with a connection limit and a statement timeout.
-- Run once as a superuser or the database owner:
--   psql "$DATABASE_URL" -v password="'choose-one'" -f docs/dashboard-role.sql
-- Re-running it is safe.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'regsync_dashboard') THEN
        CREATE ROLE regsync_dashboard LOGIN;
    END IF;
END
$$;

-- A handful of panels need a handful of connections; a runaway query is cut
-- off. (A role may change its own session settings, so read-only mode below
-- is a courtesy: what keeps the dashboard from writing is that it holds no
-- write privilege anywhere.)
ALTER ROLE regsync_dashboard PASSWORD :password CONNECTION LIMIT 5 NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
ALTER ROLE regsync_dashboard SET default_transaction_read_only = on;
ALTER ROLE regsync_dashboard SET statement_timeout = '10s';
ALTER ROLE regsync_dashboard SET idle_in_transaction_session_timeout = '60s';

GRANT CONNECT ON DATABASE :"DBNAME" TO regsync_dashboard;
-- Every role may create temporary tables and, before PostgreSQL 15, tables in
-- schema `public`, through PUBLIC. This database is regsync's: take both from
-- PUBLIC (regsync, the owner, keeps its own rights).
REVOKE TEMPORARY ON DATABASE :"DBNAME" FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

GRANT USAGE ON SCHEMA ops TO regsync_dashboard;
-- Views read their tables with their owner's rights: no grant on the tables.
GRANT SELECT ON ALL TABLES IN SCHEMA ops TO regsync_dashboard;
-- Views later migrations add are readable too when this script runs as the
-- role that migrates (regsync's own); otherwise re-run it after an upgrade.
ALTER DEFAULT PRIVILEGES IN SCHEMA ops GRANT SELECT ON TABLES TO regsync_dashboard;
