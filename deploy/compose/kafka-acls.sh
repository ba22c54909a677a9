#!/bin/sh
# docker compose, once the broker is healthy (apache/kafka image): create each plane's ACLs as the operator.
# The arguments come from deploy/compose/acls.args, generated from deploy/acls.py (a unit test keeps them
# equal); creating an ACL that exists is a no-op, so this runs on every `docker compose up`.
set -euf  # -f: no globbing, `--topic *` is Kafka's wildcard
grep -v '^#' /featureplane/acls.args | while IFS= read -r line; do
  # shellcheck disable=SC2086 # each line is a list of arguments
  /opt/kafka/bin/kafka-acls.sh --bootstrap-server kafka:9092 --command-config /secrets/operator.properties \
    --add --force $line > /dev/null
done
echo "ACLs created"
