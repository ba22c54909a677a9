#!/bin/sh
# docker compose, before the broker starts (apache/kafka image): make each Kafka principal's password once
# (/secrets, a volume the featureplane container mounts read-only), write the broker's SASL settings and
# format the storage with the SCRAM users, as deploy/kafka_sasl.py does for `featureplane up`.
# Passwords are never printed. Runs as root (fresh volumes belong to root) and hands the files to the
# image's own user, which the broker and kafka-acls run as; featureplane (root) reads them too.
set -eu
umask 077
SECRETS=/secrets
CREDS="$SECRETS/kafka-credentials.json"
USERS="broker operator control data customer"
password() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }
if [ ! -f "$CREDS" ]; then
  sep=""
  printf '{' > "$CREDS.tmp"
  for u in $USERS; do printf '%s\n  "%s": "%s"' "$sep" "$u" "$(password)" >> "$CREDS.tmp"; sep=","; done
  printf '\n}\n' >> "$CREDS.tmp"
  mv "$CREDS.tmp" "$CREDS"
fi
pw() { sed -n "s/^ *\"$1\": \"\([^\"]*\)\".*/\1/p" "$CREDS"; }
BROKER_PW="$(pw broker)"
OPERATOR_PW="$(pw operator)"
# The broker's own logins (read by the official image from /mnt/shared/config, env vars on top of it).
cat > "$SECRETS/server.properties" <<PROPS
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$BROKER_PW";
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" password="$BROKER_PW" user_broker="$BROKER_PW";
PROPS
cat > "$SECRETS/operator.properties" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-256
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="operator" password="$OPERATOR_PW";
PROPS
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  cat > /tmp/format.properties <<PROPS
process.roles=broker,controller
node.id=${KAFKA_NODE_ID}
controller.quorum.voters=${KAFKA_CONTROLLER_QUORUM_VOTERS}
controller.listener.names=CONTROLLER
listeners=SASL_PLAINTEXT://:9092,CONTROLLER://:9093
log.dirs=/var/lib/kafka/data
PROPS
  set --
  for u in $USERS; do set -- "$@" --add-scram "SCRAM-SHA-256=[name=$u,password=$(pw "$u")]"; done
  /opt/kafka/bin/kafka-storage.sh format -t "$CLUSTER_ID" -c /tmp/format.properties "$@" > /dev/null
  echo "formatted the storage with the SCRAM users: $USERS"
fi
chown -R appuser:appuser /var/lib/kafka/data "$SECRETS"
