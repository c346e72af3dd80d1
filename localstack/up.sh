#!/usr/bin/env bash
# Deploys template.yaml on a local AWS emulator and writes the endpoints the e2e tests
# need to target/emulators/stack.env. See localstack/README.md.
#
#   localstack/up.sh                         ministack (installed into a venv, started here)
#   localstack/up.sh --emulator localstack   a LocalStack already running at $LOCALSTACK_ENDPOINT
#
# Options:
#   --emulator ministack|localstack   (default ministack)
#   --stack-name NAME                 (default $CHAT_STACK_NAME or chat-e2e)
#   --template PATH                   (default template.yaml at the repository root)
#   --param KEY=VALUE                 extra parameter override (repeatable)
#   --profile NAME                    cargo profile of the Lambda binary (default release,
#                                     what `sam build` deploys; dev reuses the debug build)
#   --no-build                        use the binaries already built for that profile
#
# Environment: CHAT_EMULATORS_DIR (default target/emulators), LOCALSTACK_ENDPOINT (default
# http://127.0.0.1:4566), LOCALSTACK_MANAGEMENT_ENDPOINT (see the README). The HS256
# secret is the stack's own (Secrets Manager, JwtSecretArn=create): read back after deploy.
set -euo pipefail

MINISTACK_VERSION=1.5.33
AWSCLI_VERSION=1.46.3   # brings botocore 1.43.x and PyYAML 6.0.x (the template deriver uses it)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EMULATOR=ministack
STACK=${CHAT_STACK_NAME:-chat-e2e}
TEMPLATE=$ROOT/template.yaml
BUILD=1
PROFILE=release
EXTRA_PARAMS=()

while [ $# -gt 0 ]; do
  case "$1" in
    --emulator) EMULATOR=${2:?}; shift 2 ;;
    --emulator=*) EMULATOR=${1#*=}; shift ;;
    --stack-name) STACK=${2:?}; shift 2 ;;
    --template) TEMPLATE=$(cd "$(dirname "${2:?}")" && pwd)/$(basename "$2"); shift 2 ;;
    --param) EXTRA_PARAMS+=("${2:?}"); shift 2 ;;
    --profile) PROFILE=${2:?}; shift 2 ;;
    --profile=*) PROFILE=${1#*=}; shift ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "up.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$EMULATOR" in ministack|localstack) ;; *) echo "up.sh: --emulator is ministack or localstack" >&2; exit 2 ;; esac

EMU_DIR=${CHAT_EMULATORS_DIR:-$ROOT/target/emulators}
mkdir -p "$EMU_DIR/logs"
EMU_DIR=$(cd "$EMU_DIR" && pwd)
VENV=$EMU_DIR/ministack-venv
STACK_BUILD=$EMU_DIR/stack-build
ENV_FILE=$EMU_DIR/stack.env
T_START=$(date +%s)

log() { printf 'up.sh [%3ss] %s\n' "$(( $(date +%s) - T_START ))" "$*" >&2; }
die() { echo "up.sh: $*" >&2; exit 1; }

# ------------------------------------------------------------------ tools (venv)
REQS="ministack[full]==$MINISTACK_VERSION awscli==$AWSCLI_VERSION"
if [ "$(cat "$VENV/.chat-requirements" 2>/dev/null || true)" != "$REQS" ]; then
  log "installing $REQS into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $REQS >"$EMU_DIR/logs/install-ministack.log" 2>&1 \
    || { tail -20 "$EMU_DIR/logs/install-ministack.log" >&2; die "pip install failed (log: $EMU_DIR/logs/install-ministack.log)"; }
  echo "$REQS" >"$VENV/.chat-requirements"
fi
PY=$VENV/bin/python
AWS=$VENV/bin/aws

# Dummy credentials and a region for every AWS call below (and the emulator's children).
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} AWS_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export AWS_PAGER="" AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_SESSION_TOKEN

env_value() { # env_value KEY: a value from the previous stack.env, or nothing
  [ -f "$ENV_FILE" ] || return 0
  sed -n "s/^$1='\(.*\)'\$/\1/p" "$ENV_FILE" | tail -1
}

# ------------------------------------------------------------------ build the functions
if [ "$BUILD" = 1 ]; then
  log "building the Lambda functions (cargo build --profile $PROFILE -p chat-functions)"
  (cd "$ROOT" && cargo build --profile "$PROFILE" -p chat-functions)
fi
# Cargo puts the dev profile's output in target/debug.
BINARIES_DIR=$ROOT/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")

# ------------------------------------------------------------------ the emulator
if [ "$EMULATOR" = ministack ]; then
  PORT="" PID=""
  # Reuse the ministack of a previous up.sh if it still runs (up.sh is idempotent).
  old_pid=$(env_value MINISTACK_PID) old_port=$(env_value MINISTACK_PORT)
  if [ -n "$old_pid" ] && [ -n "$old_port" ] && kill -0 "$old_pid" 2>/dev/null \
     && curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$old_port/_ministack/ready"; then
    PORT=$old_port PID=$old_pid
    log "reusing ministack pid $PID on port $PORT"
  else
    PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    MLOG=$EMU_DIR/logs/ministack-$PORT.log
    log "starting ministack $MINISTACK_VERSION on 127.0.0.1:$PORT (log: $MLOG)"
    # setsid: its own process group (down.sh stops the group: ministack and its Lambda
    # processes). The Lambda processes inherit this environment, AWS_ENDPOINT_URL included.
    # IOT_MTLS_ENABLED=0 / SFTP_ENABLED=0: no extra listeners on fixed ports (8883, ...).
    # STATE_DIR/TMPDIR: its scratch files (extracted Lambda code, ...) stay under
    # $EMU_DIR/ministack-$PORT, which down.sh removes.
    RUN_DIR=$EMU_DIR/ministack-$PORT
    mkdir -p "$RUN_DIR/state" "$RUN_DIR/tmp"
    GATEWAY_PORT=$PORT BIND_HOST=127.0.0.1 AWS_ENDPOINT_URL=http://127.0.0.1:$PORT \
      IOT_MTLS_ENABLED=0 SFTP_ENABLED=0 STATE_DIR="$RUN_DIR/state" TMPDIR="$RUN_DIR/tmp" \
      setsid "$VENV/bin/ministack" </dev/null >"$MLOG" 2>&1 &
    PID=$!
    for _ in $(seq 1 300); do
      curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/_ministack/ready" && break
      kill -0 "$PID" 2>/dev/null || { tail -20 "$MLOG" >&2; die "ministack exited (log: $MLOG)"; }
      sleep 0.1
    done
    curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/_ministack/ready" \
      || { kill "$PID" 2>/dev/null || true; die "ministack did not answer within 30 s (log: $MLOG)"; }
    log "ministack ready (pid $PID)"
    # Recorded now, so that down.sh (or the next up.sh) finds it even if the deploy fails.
    printf "%s\n" "# Written by localstack/up.sh: ministack started, stack not deployed yet." \
      "CHAT_E2E_EMULATOR='ministack'" "CHAT_E2E_STACK_NAME='$STACK'" \
      "CHAT_E2E_AWS_ENDPOINT_URL='http://127.0.0.1:$PORT'" \
      "MINISTACK_PORT='$PORT'" "MINISTACK_PID='$PID'" >"$ENV_FILE"
  fi
  ENDPOINT=http://127.0.0.1:$PORT
else
  ENDPOINT=${LOCALSTACK_ENDPOINT:-http://127.0.0.1:4566}
  curl -sf -o /dev/null --max-time 5 "$ENDPOINT/_localstack/health" \
    || die "no LocalStack answers at $ENDPOINT (start it first: it needs Docker, and WebSocket APIs need a paid plan: LOCALSTACK_AUTH_TOKEN)"
  PORT="" PID=""
  log "using LocalStack at $ENDPOINT"
fi
export AWS_ENDPOINT_URL=$ENDPOINT

# ------------------------------------------------------------------ the template
# A stack that already exists keeps its WebSocket API id; a new one gets a random id,
# pinned by a tag so the Management API endpoint is known before the deploy.
WS_API_ID=""
STATUS=$("$AWS" cloudformation describe-stacks --stack-name "$STACK" --query 'Stacks[0].StackStatus' \
  --output text 2>/dev/null || true)
case "$STATUS" in
  ROLLBACK_COMPLETE|ROLLBACK_FAILED|CREATE_FAILED|DELETE_FAILED)
    log "stack $STACK is $STATUS from an earlier attempt: deleting it"
    "$AWS" cloudformation delete-stack --stack-name "$STACK"
    "$AWS" cloudformation wait stack-delete-complete --stack-name "$STACK" || true
    STATUS="" ;;
esac
if [ -n "$STATUS" ]; then
  WS_API_ID=$("$AWS" cloudformation describe-stacks --stack-name "$STACK" \
    --query "Stacks[0].Outputs[?OutputKey=='WebSocketApiId'].OutputValue" --output text 2>/dev/null || true)
  [ "$WS_API_ID" = None ] && WS_API_ID=""
fi
[ -n "$WS_API_ID" ] || WS_API_ID=$("$PY" -c 'import secrets; print(secrets.token_hex(4))')

PARAM_ARGS=()
for p in ${EXTRA_PARAMS[@]+"${EXTRA_PARAMS[@]}"}; do PARAM_ARGS+=(--param "$p"); done
log "laying out the bootstraps and deriving the template in $STACK_BUILD"
SUMMARY=$("$PY" "$ROOT/localstack/derive_template.py" --template "$TEMPLATE" --out-dir "$STACK_BUILD" \
  --binaries-dir "$BINARIES_DIR" --emulator "$EMULATOR" --ws-api-id "$WS_API_ID" \
  ${PARAM_ARGS[@]+"${PARAM_ARGS[@]}"})
echo "$SUMMARY" >"$STACK_BUILD/summary.json"
summary() { "$PY" -c "import json,sys; d=json.load(open('$STACK_BUILD/summary.json')); print($1)"; }
has_param() { summary "'$1' in d['parameters']" | grep -qx True; }
WS_STAGE=$(summary "(d['websocket_apis'] or [{}])[0].get('stage') or ''")
[ -n "$WS_STAGE" ] || die "cannot tell the WebSocket API's stage name from the template"

if [ "$EMULATOR" = ministack ]; then
  MGMT_ENDPOINT=$ENDPOINT/_aws/execute-api/$WS_API_ID/$WS_STAGE
else
  # Inside LocalStack's Lambda containers, *.localhost.localstack.cloud resolves to LocalStack.
  MGMT_ENDPOINT=${LOCALSTACK_MANAGEMENT_ENDPOINT:-http://$WS_API_ID.execute-api.localhost.localstack.cloud:4566/$WS_STAGE}
fi

OVERRIDES=()
has_param Architecture && OVERRIDES+=("Architecture=x86_64")
has_param ManagementEndpoint && OVERRIDES+=("ManagementEndpoint=$MGMT_ENDPOINT")
# The e2e's identity provider: a key set the tests serve on this port while they run
# (aws/tests/deployed_stack.rs signs RS256 tokens with tests/keys/rsa-a.der).
E2E_ISSUER=https://e2e-issuer.example/
E2E_AUDIENCE=chat-e2e
JWKS_PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if has_param JwksUrl; then
  OVERRIDES+=("JwksUrl=http://127.0.0.1:$JWKS_PORT/.well-known/jwks.json" "JwtIssuer=$E2E_ISSUER" "JwtAudience=$E2E_AUDIENCE")
fi
OVERRIDES+=(${EXTRA_PARAMS[@]+"${EXTRA_PARAMS[@]}"})

# ------------------------------------------------------------------ deploy
BUCKET=chat-e2e-artifacts
"$AWS" s3api head-bucket --bucket "$BUCKET" >/dev/null 2>&1 || "$AWS" s3 mb "s3://$BUCKET" >/dev/null
log "packaging (aws cloudformation package)"
"$AWS" cloudformation package --template-file "$STACK_BUILD/template.yaml" --s3-bucket "$BUCKET" \
  --s3-prefix "$STACK" --output-template-file "$STACK_BUILD/packaged.yaml" >"$EMU_DIR/logs/package.log" 2>&1 \
  || { cat "$EMU_DIR/logs/package.log" >&2; die "aws cloudformation package failed"; }
log "deploying stack $STACK (aws cloudformation deploy)"
# The template is over CloudFormation's 51,200-byte inline limit: it goes by S3 too.
if ! "$AWS" cloudformation deploy --template-file "$STACK_BUILD/packaged.yaml" --stack-name "$STACK" \
    --s3-bucket "$BUCKET" --s3-prefix "$STACK" \
    --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --no-fail-on-empty-changeset \
    --parameter-overrides "${OVERRIDES[@]}" >&2; then
  echo "up.sh: the deploy failed; the stack's events:" >&2
  "$AWS" cloudformation describe-stack-events --stack-name "$STACK" \
    --query 'StackEvents[?contains(ResourceStatus, `FAILED`)].[LogicalResourceId,ResourceType,ResourceStatusReason]' \
    --output text >&2 || true
  exit 1
fi

# ------------------------------------------------------------------ outputs -> stack.env
output() {
  local v
  v=$("$AWS" cloudformation describe-stacks --stack-name "$STACK" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text)
  [ "$v" = None ] && v=""
  printf '%s' "$v"
}
DEPLOYED_WS=$(output WebSocketApiId)
HTTP_API_ID=$(output HttpApiId)
STAGE=$(output StageName)
[ -n "$DEPLOYED_WS" ] || die "the stack has no WebSocketApiId output"
[ -n "$HTTP_API_ID" ] || die "the stack has no HttpApiId output"
[ -n "$STAGE" ] || STAGE=$WS_STAGE
[ "$DEPLOYED_WS" = "$WS_API_ID" ] || die "the WebSocket API got id $DEPLOYED_WS, not the pinned $WS_API_ID: CHAT_APIGW_ENDPOINT is wrong"
HTTP_STAGE=$("$AWS" apigatewayv2 get-stages --api-id "$HTTP_API_ID" --query 'Items[0].StageName' --output text)

if [ "$EMULATOR" = ministack ]; then
  WS_URL=ws://127.0.0.1:$PORT/_aws/execute-api/$DEPLOYED_WS/$STAGE
  HTTP_URL=http://127.0.0.1:$PORT/_aws/execute-api/$HTTP_API_ID
else
  WS_URL=$("$AWS" apigatewayv2 get-api --api-id "$DEPLOYED_WS" --query ApiEndpoint --output text)/$STAGE
  HTTP_URL=$("$AWS" apigatewayv2 get-api --api-id "$HTTP_API_ID" --query ApiEndpoint --output text)
fi
# A $default stage serves from the root of the API's URL; any other stage is a path segment.
[ "$HTTP_STAGE" = '$default' ] || HTTP_URL=$HTTP_URL/$HTTP_STAGE

# The tests sign their HS256 tokens with the secret the functions read from Secrets Manager.
SECRET_ARN=$(output TokenSecretArn)
JWT_SECRET=""
if [ -n "$SECRET_ARN" ]; then
  JWT_SECRET=$("$AWS" secretsmanager get-secret-value --secret-id "$SECRET_ARN" \
    --query SecretString --output text)
  [ -n "$JWT_SECRET" ] && [ "$JWT_SECRET" != None ] || die "cannot read the token secret $SECRET_ARN"
fi

TMP_ENV=$ENV_FILE.tmp
{
  echo "# Written by localstack/up.sh at $(date -u +%Y-%m-%dT%H:%M:%SZ); read by the e2e tests."
  echo "# Use: set -a; . $ENV_FILE; set +a"
  echo "CHAT_E2E_EMULATOR='$EMULATOR'"
  echo "CHAT_E2E_WS_URL='$WS_URL'"
  echo "CHAT_E2E_HTTP_URL='$HTTP_URL'"
  # Generated: it may hold any character (ministack ignores ExcludePunctuation), quote it.
  echo "CHAT_E2E_JWT_SECRET='${JWT_SECRET//\'/\'\\\'\'}'"
  echo "CHAT_E2E_TOKEN_SECRET_ARN='$SECRET_ARN'"
  if has_param JwksUrl; then
    echo "CHAT_E2E_JWKS_PORT='$JWKS_PORT'"
    echo "CHAT_E2E_JWT_ISSUER='$E2E_ISSUER'"
    echo "CHAT_E2E_JWT_AUDIENCE='$E2E_AUDIENCE'"
  fi
  echo "CHAT_E2E_STACK_NAME='$STACK'"
  echo "CHAT_E2E_AWS_ENDPOINT_URL='$ENDPOINT'"
  echo "CHAT_E2E_MANAGEMENT_ENDPOINT='$MGMT_ENDPOINT'"
  for key in MainTableName MessagesTableName ConnectionsTableName FanoutDeadLetterQueueUrl SweepFunctionName; do
    v=$(output "$key")
    [ -z "$v" ] || echo "CHAT_E2E_$(echo "$key" | sed 's/\([a-z]\)\([A-Z]\)/\1_\2/g' | tr a-z A-Z)='$v'"
  done
  if [ "$EMULATOR" = ministack ]; then
    echo "MINISTACK_PORT='$PORT'"
    echo "MINISTACK_PID='$PID'"
  fi
} >"$TMP_ENV"
mv "$TMP_ENV" "$ENV_FILE"
log "stack $STACK is up; wrote $ENV_FILE"
grep -v -e '^#' -e JWT_SECRET "$ENV_FILE" >&2 || true
