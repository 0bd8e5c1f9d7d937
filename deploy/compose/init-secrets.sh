#!/bin/sh
# Writes the secrets docker-compose.yml mounts (compose `secrets:`), once; existing files are kept.
#   deploy/compose/secrets/pagerduty-routing-key  the notifier's and Alertmanager's PagerDuty routing key:
#                                                 $PAGERDUTY_ROUTING_KEY, else a placeholder (PagerDuty
#                                                 then answers 400 and the notifier dead-letters the event)
#   deploy/compose/secrets/gate-token             the workers' write token (SLO_STREAM_GATE_TOKEN_FILE):
#                                                 random, 48 hex characters
# The files are mode 0644: compose bind-mounts them as they are, and the containers run as other users
# (slo-stream 10001, Alertmanager 65534). This is a laptop stack; clusters use Kubernetes Secrets.
set -eu
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
mkdir -p "$dir"
umask 022
if [ ! -s "$dir/pagerduty-routing-key" ]; then
  if [ -n "${PAGERDUTY_ROUTING_KEY:-}" ]; then
    printf '%s\n' "$PAGERDUTY_ROUTING_KEY" > "$dir/pagerduty-routing-key"
    echo "wrote $dir/pagerduty-routing-key from \$PAGERDUTY_ROUTING_KEY"
  else
    printf '%s\n' "placeholder-routing-key-set-PAGERDUTY_ROUTING_KEY" > "$dir/pagerduty-routing-key"
    echo "wrote a placeholder $dir/pagerduty-routing-key (set PAGERDUTY_ROUTING_KEY and delete the file to use yours)"
  fi
fi
if [ ! -s "$dir/gate-token" ]; then
  od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > "$dir/gate-token"
  echo >> "$dir/gate-token"
  echo "wrote a random $dir/gate-token"
fi
