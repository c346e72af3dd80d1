#!/usr/bin/env bash
# `sam build` for arm64 (the template's default architecture), offline: cargo-lambda and
# zig come from PyPI into a venv under target/. Prints each function's zip size.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
emulators="${CHAT_EMULATORS_DIR:-$root/target/emulators}"
venv="$emulators/build-venv"
CARGO_LAMBDA_VERSION=1.9.2
ZIG_VERSION=0.13.0

if [ ! -x "$venv/bin/cargo-lambda" ] \
  || [ "$(cat "$venv/.versions" 2>/dev/null)" != "$CARGO_LAMBDA_VERSION $ZIG_VERSION" ]; then
  echo "installing cargo-lambda $CARGO_LAMBDA_VERSION and ziglang $ZIG_VERSION into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "cargo-lambda==$CARGO_LAMBDA_VERSION" "ziglang==$ZIG_VERSION"
  echo "$CARGO_LAMBDA_VERSION $ZIG_VERSION" > "$venv/.versions"
fi
sam="$emulators/lint-venv/bin/sam"
[ -x "$sam" ] || bash "$root/infra/lint.sh" >/dev/null

cd "$root"
# SAM's cargo-lambda builder asks `cargo metadata` for the workspace's target directory
# (which follows CARGO_TARGET_DIR) and both builds into and copies from it: the build
# works with or without the variable. Every function is the one binary, chat-lambda.
export PATH="$venv/bin:$PATH" SAM_CLI_TELEMETRY=0 AWS_REGION="${AWS_REGION:-us-east-1}"
"$sam" build --template-file template.yaml --build-dir .aws-sam/build \
  --parameter-overrides Architecture=arm64
echo
echo "function            bootstrap (bytes)   zip (bytes)"
for dir in .aws-sam/build/*Function; do
  name=$(basename "$dir")
  size=$(stat -c %s "$dir/bootstrap")
  zip=$(cd "$dir" && python3 -c "import io,zipfile;b=io.BytesIO();z=zipfile.ZipFile(b,'w',zipfile.ZIP_DEFLATED);z.write('bootstrap');z.close();print(len(b.getvalue()))")
  printf "%-20s %17s %13s\n" "$name" "$size" "$zip"
done
