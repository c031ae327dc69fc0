#!/usr/bin/env bash
# Apache Kafka for docker-compose.yml, run inside the apache/kafka image: one KRaft node whose client
# listener takes SASL/SCRAM-SHA-512 only, with the StandardAuthorizer denying whatever no ACL allows.
#
#   kafka.sh serve    format the storage once, adding the admin's SCRAM credential, and start the broker
#   kafka.sh users    create or update the SCRAM credentials of the gate and the relay (as the admin)
#   kafka.sh health   ask the broker for its API versions, as the admin
#
# Passwords come from the environment (docker compose takes them from .env). Files that hold one are
# written under $XLEDGER_KAFKA_WORK with mode 600, inside the container only.
set -euo pipefail

KAFKA_HOME=${KAFKA_HOME:-/opt/kafka}
WORK=${XLEDGER_KAFKA_WORK:-/tmp/xledger-kafka}
DATA=${XLEDGER_KAFKA_DATA:-/var/lib/kafka/data}
BOOTSTRAP=${XLEDGER_KAFKA_BOOTSTRAP:-kafka:9092}
CLUSTER_ID=${XLEDGER_KAFKA_CLUSTER_ID:-ZXhjaGFuZ2UtbGVkZ2VyMQ}
ADMIN=xledger-admin
MECHANISM=SCRAM-SHA-512

fail() {
  echo "error: $*" >&2
  exit 2
}

# A password must be set, and plain enough to sit inside SCRAM's [password=…] and JAAS's "…" syntax.
password() {
  local name=$1
  local value=${!name:-}
  [[ -n $value ]] || fail "$name is not set (copy .env.example to .env and fill it in)"
  [[ $value =~ ^[A-Za-z0-9_-]{16,}$ ]] || fail "$name must be at least 16 characters of A-Z a-z 0-9 _ -"
  printf '%s' "$value"
}

jaas() {
  printf 'org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";' "$1" "$2"
}

write_admin_client_config() {
  local admin_password=$1
  umask 077
  mkdir -p "$WORK"
  cat >"$WORK/admin.properties" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=$MECHANISM
sasl.jaas.config=$(jaas "$ADMIN" "$admin_password")
PROPERTIES
}

serve() {
  local admin_password
  admin_password=$(password XLEDGER_KAFKA_ADMIN_PASSWORD)
  write_admin_client_config "$admin_password"
  cat >"$WORK/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=1
# The controller listener is plaintext, so it is bound to loopback: only this container reaches it.
controller.quorum.voters=1@127.0.0.1:9093
controller.listener.names=CONTROLLER
listeners=SASL_PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9093
advertised.listeners=SASL_PLAINTEXT://kafka:9092
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=SASL_PLAINTEXT
sasl.enabled.mechanisms=$MECHANISM
sasl.mechanism.inter.broker.protocol=$MECHANISM
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=$(jaas "$ADMIN" "$admin_password")
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
# The admin creates topics, users and ACLs. ANONYMOUS is the controller listener's (loopback) principal.
super.users=User:$ADMIN;User:ANONYMOUS
allow.everyone.if.no.acl.found=false
auto.create.topics.enable=false
log.dirs=$DATA
# One node: Kafka's internal topics can have one copy only.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES
  # The admin's credential goes into the metadata log when the storage is first formatted (KIP-900):
  # the broker itself authenticates with it. Later starts find the storage formatted and keep it.
  "$KAFKA_HOME/bin/kafka-storage.sh" format --ignore-formatted --cluster-id "$CLUSTER_ID" \
    --config "$WORK/server.properties" --add-scram "$MECHANISM=[name=$ADMIN,password=$admin_password]"
  exec "$KAFKA_HOME/bin/kafka-server-start.sh" "$WORK/server.properties"
}

users() {
  local admin_password user variable user_password
  admin_password=$(password XLEDGER_KAFKA_ADMIN_PASSWORD)
  write_admin_client_config "$admin_password"
  for user in xledger-gate:XLEDGER_GATE_KAFKA_PASSWORD xledger-relay:XLEDGER_RELAY_KAFKA_PASSWORD; do
    variable=${user#*:}
    user=${user%%:*}
    user_password=$(password "$variable")
    "$KAFKA_HOME/bin/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$WORK/admin.properties" \
      --alter --entity-type users --entity-name "$user" --add-config "$MECHANISM=[password=$user_password]"
  done
}

health() {
  [[ -f $WORK/admin.properties ]] || fail "the broker has not written $WORK/admin.properties yet"
  "$KAFKA_HOME/bin/kafka-broker-api-versions.sh" --bootstrap-server localhost:9092 \
    --command-config "$WORK/admin.properties" >/dev/null
}

case ${1:-} in
  serve) serve ;;
  users) users ;;
  health) health ;;
  *) fail "usage: kafka.sh serve|users|health" ;;
esac
