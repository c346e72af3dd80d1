#!/usr/bin/env bash
# The end-to-end suite against the real stack: deploys template.yaml with the real
# Lambda binaries on ministack (up.sh), runs the suite against it, and tears it down
# whatever happens. Extra arguments go to up.sh (e.g. --emulator localstack).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
trap 'bash "$root/localstack/down.sh" >/dev/null 2>&1 || true' EXIT
bash localstack/up.sh "$@"
set -a
# shellcheck disable=SC1091
. target/emulators/stack.env
set +a
# The suites must reach the stack, never fall back to a local server: fail here on a
# stack.env without them, and make the e2e suite refuse to run without them too.
for var in CHAT_E2E_WS_URL CHAT_E2E_HTTP_URL CHAT_E2E_JWT_SECRET; do
  if [ -z "${!var:-}" ]; then
    echo "e2e.sh: $var is missing from target/emulators/stack.env" >&2
    exit 1
  fi
done
export CHAT_E2E_REQUIRE=1
cargo test --workspace --test e2e
cargo test --workspace --test deployed_stack -- --ignored
