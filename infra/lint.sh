#!/usr/bin/env bash
# Lints template.yaml with cfn-lint and `sam validate --lint`, offline. Installs both
# (pinned) into a venv under target/ the first time; later runs reuse it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${CHAT_EMULATORS_DIR:-$root/target/emulators}/lint-venv"
# cfn-lint comes with aws-sam-cli (which pins the version it lints with).
SAM_VERSION=1.170.0

if [ ! -x "$venv/bin/sam" ] || [ ! -x "$venv/bin/cfn-lint" ] \
  || [ "$(cat "$venv/.sam-version" 2>/dev/null)" != "$SAM_VERSION" ]; then
  echo "installing aws-sam-cli $SAM_VERSION (with cfn-lint) into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "aws-sam-cli==$SAM_VERSION"
  echo "$SAM_VERSION" > "$venv/.sam-version"
fi

cd "$root"
"$venv/bin/cfn-lint" template.yaml
# sam needs a region and no telemetry; it never contacts AWS for validate --lint.
AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 \
  "$venv/bin/sam" validate --lint --template-file template.yaml
echo "template.yaml: cfn-lint and sam validate --lint clean"
