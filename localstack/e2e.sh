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
cargo test --workspace --test e2e
cargo test --workspace --test deployed_stack -- --ignored
