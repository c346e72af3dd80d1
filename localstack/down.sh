#!/usr/bin/env bash
# Tears down what localstack/up.sh brought up: deletes the stack and, for ministack,
# stops the emulator recorded in target/emulators/stack.env (its process group: the
# emulator and the Lambda processes it started). See localstack/README.md.
#
#   localstack/down.sh              delete the stack, stop ministack, remove stack.env
#   localstack/down.sh --keep-emulator   only delete the stack
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --keep-emulator) KEEP=1; shift ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "down.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

EMU_DIR=${CHAT_EMULATORS_DIR:-$ROOT/target/emulators}
ENV_FILE=$EMU_DIR/stack.env
AWS=$EMU_DIR/ministack-venv/bin/aws
if [ ! -f "$ENV_FILE" ]; then
  echo "down.sh: no $ENV_FILE: nothing to tear down" >&2
  exit 0
fi
env_value() { sed -n "s/^$1='\(.*\)'\$/\1/p" "$ENV_FILE" | tail -1; }
EMULATOR=$(env_value CHAT_E2E_EMULATOR)
STACK=$(env_value CHAT_E2E_STACK_NAME)
ENDPOINT=$(env_value CHAT_E2E_AWS_ENDPOINT_URL)
PID=$(env_value MINISTACK_PID)
PORT=$(env_value MINISTACK_PORT)

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} AWS_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export AWS_PAGER="" AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export AWS_ENDPOINT_URL=$ENDPOINT
unset AWS_PROFILE AWS_SESSION_TOKEN

# Is the recorded ministack still the process we started (alive and answering)?
ministack_alive() {
  [ -n "$PID" ] && [ -n "$PORT" ] && kill -0 "$PID" 2>/dev/null \
    && curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/_ministack/ready"
}

reachable=1
if [ "$EMULATOR" = ministack ]; then ministack_alive || reachable=0; fi
if [ "$reachable" = 1 ] && [ -n "$STACK" ] && [ -x "$AWS" ]; then
  if "$AWS" cloudformation describe-stacks --stack-name "$STACK" >/dev/null 2>&1; then
    echo "down.sh: deleting stack $STACK at $ENDPOINT" >&2
    "$AWS" cloudformation delete-stack --stack-name "$STACK"
    "$AWS" cloudformation wait stack-delete-complete --stack-name "$STACK" \
      || echo "down.sh: the stack did not delete cleanly (see describe-stack-events)" >&2
  fi
fi

if [ "$EMULATOR" = ministack ] && [ "$KEEP" = 0 ] && [ -n "$PID" ]; then
  if kill -0 "$PID" 2>/dev/null; then
    # up.sh started ministack with setsid: its pid is its process group id.
    echo "down.sh: stopping ministack (pid $PID)" >&2
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$PID" 2>/dev/null && kill -KILL "$PID" 2>/dev/null || true
  fi
  # Lambda processes left in its group, if any.
  kill -TERM -- "-$PID" 2>/dev/null || true
  [ -z "$PORT" ] || rm -rf "$EMU_DIR/ministack-$PORT"
fi
if [ "$KEEP" = 0 ]; then rm -f "$ENV_FILE"; fi
echo "down.sh: done" >&2
