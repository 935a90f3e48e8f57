#!/bin/sh
# One-shot (compose service clickhouse-users), after `agenttrail migrate` created the roles:
# the consumer's user with the writer role and Grafana's user with the reader role,
# passwords from the environment. Idempotent: a re-run resets the passwords to the
# current values and re-grants the roles.
set -eu
: "${AGENTTRAIL_CH_ADMIN_PASSWORD:?set AGENTTRAIL_CH_ADMIN_PASSWORD}"
: "${AGENTTRAIL_CH_WRITER_PASSWORD:?set AGENTTRAIL_CH_WRITER_PASSWORD}"
: "${AGENTTRAIL_CH_READER_PASSWORD:?set AGENTTRAIL_CH_READER_PASSWORD}"
WRITER_ROLE="${AGENTTRAIL_CH_WRITER_ROLE:-agenttrail_writer}"
READER_ROLE="${AGENTTRAIL_CH_READER_ROLE:-agenttrail_reader}"

# A ClickHouse string literal: backslashes and single quotes escaped.
literal() { printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g")"; }

clickhouse-client --host clickhouse --user agenttrail_admin \
  --password "$AGENTTRAIL_CH_ADMIN_PASSWORD" --multiquery --query "
CREATE USER IF NOT EXISTS agenttrail_ingest IDENTIFIED WITH sha256_password BY $(literal "$AGENTTRAIL_CH_WRITER_PASSWORD") DEFAULT DATABASE agenttrail;
ALTER USER agenttrail_ingest IDENTIFIED WITH sha256_password BY $(literal "$AGENTTRAIL_CH_WRITER_PASSWORD");
GRANT $WRITER_ROLE TO agenttrail_ingest;
ALTER USER agenttrail_ingest DEFAULT ROLE $WRITER_ROLE;
CREATE USER IF NOT EXISTS agenttrail_grafana IDENTIFIED WITH sha256_password BY $(literal "$AGENTTRAIL_CH_READER_PASSWORD") DEFAULT DATABASE agenttrail;
ALTER USER agenttrail_grafana IDENTIFIED WITH sha256_password BY $(literal "$AGENTTRAIL_CH_READER_PASSWORD");
GRANT $READER_ROLE TO agenttrail_grafana;
ALTER USER agenttrail_grafana DEFAULT ROLE $READER_ROLE;
"
echo "ClickHouse users agenttrail_ingest ($WRITER_ROLE) and agenttrail_grafana ($READER_ROLE) are set."
