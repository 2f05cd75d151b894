-- A read-only role for the ops dashboard: it can read the `ops` views and
-- nothing else. Run once as a superuser or the database owner:
--   psql "$DATABASE_URL" -v password="'choose-one'" -f docs/dashboard-role.sql
-- Re-running it is safe.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'regsync_dashboard') THEN
        CREATE ROLE regsync_dashboard LOGIN;
    END IF;
END
$$;

ALTER ROLE regsync_dashboard PASSWORD :password;
ALTER ROLE regsync_dashboard SET default_transaction_read_only = on;

GRANT CONNECT ON DATABASE :"DBNAME" TO regsync_dashboard;
GRANT USAGE ON SCHEMA ops TO regsync_dashboard;
-- Views read their tables with their owner's rights: no grant on the tables.
-- Re-run this script after an upgrade that adds a view.
GRANT SELECT ON ALL TABLES IN SCHEMA ops TO regsync_dashboard;
