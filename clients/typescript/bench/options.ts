// What both catch-up benchmarks take: `--runs N` and `--bin path/to/chat-local` (default
// the release build), and the shape of the run.

import path from "node:path";
import { fileURLToPath } from "node:url";

const args = process.argv.slice(2);

function arg(name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : fallback;
}

const here = path.dirname(fileURLToPath(import.meta.url));
process.env.CHAT_LOCAL_BIN ??= arg("bin", path.resolve(here, "../../../../target/release/chat-local"));

export const RUNS = Number(arg("runs", "5"));
export const CONVERSATIONS = 10;
export const PER_CONVERSATION = 100;

/** The line a run prints (and BENCHMARKS.md quotes). */
export function report(runtime: string, times: number[]): string {
  const sorted = [...times].sort((a, b) => a - b);
  return JSON.stringify({
    bench: "catchup",
    runtime,
    server: path.relative(path.resolve(here, "../../../.."), process.env.CHAT_LOCAL_BIN!),
    conversations: CONVERSATIONS,
    missed: CONVERSATIONS * PER_CONVERSATION,
    runs: sorted.length,
    medianMs: Math.round(sorted[Math.floor(sorted.length / 2)]!),
    minMs: Math.round(sorted[0]!),
    maxMs: Math.round(sorted[sorted.length - 1]!),
  });
}
