// jsforce 3 (Faye long polling) as a benchmark client against the sfstream emulator.
//
//   cd tests/interop/peers && node ../../../benchmarks/jsforce_drain.mjs \
//       --instance-url URL --token TOKEN --channel /event/Bench__e --count N [--stall S]
//
// Packages are resolved from the current directory (tests/interop/peers holds jsforce 3.10.16
// after `npm ci`), not from this file's folder. Prints {"event":"ready"}, waits for a line on
// stdin, then subscribes with replay -2 (all retained events) and receives N events, and
// prints {"event":"done", wall, cpu, ...}: wall from process.hrtime, cpu from
// process.cpuUsage() (user + system of this process). {"event":"error"} if it fails or stalls.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import readline from "node:readline";
import { pathToFileURL } from "node:url";
import { format, parseArgs } from "node:util";

for (const level of ["log", "info", "debug", "warn", "error", "trace"]) {
  console[level] = (...args) => process.stderr.write(`[jsforce] ${format(...args)}\n`);
}

const require = createRequire(pathToFileURL(process.cwd() + "/").href);
const jsforce = require("jsforce");
const { StreamingExtension } = require("jsforce/api/streaming");

const { values: options } = parseArgs({
  options: {
    "instance-url": { type: "string" },
    token: { type: "string" },
    version: { type: "string", default: "50.0" },
    channel: { type: "string" },
    count: { type: "string" },
    stall: { type: "string", default: "30" },
  },
});

function emit(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

function exit(code) {
  process.stdout.write("", () => process.exit(code));
  setTimeout(() => process.exit(code), 2000).unref();
}

// VmHWM: maxRSS from process.resourceUsage() is inherited from the parent process on Linux.
function peakRss() {
  try {
    const line = readFileSync("/proc/self/status", "utf8").split("\n").find((l) => l.startsWith("VmHWM:"));
    return Number(line.split(/\s+/)[1]) * 1024;
  } catch {
    return process.resourceUsage().maxRSS * 1024;
  }
}

const count = Number(options.count);
const stallMs = Number(options.stall) * 1000;
const conn = new jsforce.Connection({
  instanceUrl: options["instance-url"],
  accessToken: options.token,
  version: options.version,
});
emit({ event: "ready", version: options.version });

const input = readline.createInterface({ input: process.stdin });
let started = false;
input.on("line", () => {
  if (started) return;
  started = true;
  run();
});
input.on("close", () => {
  if (!started) exit(0);
});

function run() {
  const cpu0 = process.cpuUsage();
  const wall0 = process.hrtime.bigint();
  let received = 0;
  let last = 0;
  let lastSeen = -1;
  const client = conn.streaming.createClient([new StreamingExtension.Replay(options.channel, -2)]);
  const watchdog = setInterval(() => {
    if (received === lastSeen) {
      emit({ event: "error", error: `stalled: no event for ${options.stall} s after ${received} events`, received });
      clearInterval(watchdog);
      exit(1);
    }
    lastSeen = received;
  }, stallMs);
  const subscription = client.subscribe(options.channel, (data) => {
    received += 1;
    last = data.event.replayId;
    if (received === count) {
      const wall = Number(process.hrtime.bigint() - wall0) / 1e9;
      const used = process.cpuUsage(cpu0);
      clearInterval(watchdog);
      emit({
        event: "done",
        received,
        last_replay_id: last,
        wall,
        cpu: (used.user + used.system) / 1e6,
        peak_rss: peakRss(),
      });
      client.disconnect();
      exit(0);
    }
  });
  subscription.then(
    () => {},
    (error) => {
      emit({ event: "error", error: String(error && error.message ? error.message : error), received });
      exit(1);
    },
  );
}

process.on("SIGTERM", () => exit(0));
process.on("SIGINT", () => exit(0));
