#!/bin/bash
# Run by the postgres image when it creates its data folder (docker-compose.replica.yml): the replica may
# connect for replication as the database's user, with its password. wal_level is `replica` by default.
set -e
echo "host replication ${POSTGRES_USER} all scram-sha-256" >> "$PGDATA/pg_hba.conf"
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c "SELECT pg_reload_conf();"
