#!/bin/sh
# A migration controller's (or CI pipeline's) step: move the next share of playback-api's traffic
# onto Kubernetes only when slo-stream says so. Exit codes of `slo-stream gate check`:
#   0 proceed, 1 hold, 2 rollback, 3 cannot tell.
set -u
slo-stream gate check --service playback-api --cluster eu-west-1 --migration --wait 10m
case $? in
  0) echo "gate: proceed - shifting the next traffic step" ;;
  2) echo "gate: rollback - kubernetes fails more than legacy; moving traffic back"; exit 2 ;;
  *) echo "gate: hold or cannot tell - leaving traffic where it is"; exit 1 ;;
esac
