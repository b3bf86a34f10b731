// The reference CometD JavaScript client (cometd 9.0.0 + cometd-nodejs-client 2.0.0) against the
// sfstream emulator, the way a Salesforce application uses it, driven by JSON lines.
//
//   node emu_cometd.mjs --url http://127.0.0.1:PORT/cometd/62.0 --token TOKEN [--scheme Bearer|OAuth]
//
// It sends "Authorization: <scheme> <token>", keeps the default appendMessageTypeToURL (so it
// posts to .../handshake, .../connect, .../disconnect and .../), registers a replay extension that
// stamps ext.replay {channel: id} on every /meta/subscribe (the last replayId received, or the
// channel's starting option) and re-subscribes every channel after a re-handshake (the CometD
// client forgets subscriptions), as Salesforce's samples do. It handshakes at once.
// Commands, one JSON object a line on stdin:
//   {"op": "subscribe", "channel": "/event/X__e", "replay": -2}
//   {"op": "disconnect"}
// Lines on stdout:
//   {"event": "handshake", "successful": ..., "clientId"?, "error"?, "advice"?, "ext"?}
//   {"event": "connect_failed", "error": ..., "advice"?}
//   {"event": "server_disconnect", "message": {...}}   a /meta/disconnect from the server (it then
//                                                     handshakes again, as Salesforce asks)
//   {"event": "subscribed", "channel": ..., "successful": ..., "error"?}
//   {"event": "message", "channel": ..., "data": {...}}
//   {"event": "disconnected"}
// It exits when stdin closes, on SIGTERM and on SIGINT. The client's logging goes to stderr.

import { createRequire } from "node:module";
import readline from "node:readline";
import { format, parseArgs } from "node:util";

for (const level of ["log", "info", "debug", "warn", "error", "trace"]) {
  console[level] = (...args) => process.stderr.write(`[cometd] ${format(...args)}\n`);
}

const require = createRequire(import.meta.url);
require("cometd-nodejs-client").adapt();
const { CometD } = require("cometd");

const { values: options } = parseArgs({
  options: {
    url: { type: "string" },
    token: { type: "string" },
    scheme: { type: "string", default: "Bearer" },
  },
});

function emit(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

function exit(code) {
  process.stdout.write("", () => process.exit(code));
  setTimeout(() => process.exit(code), 2000).unref();
}

function pick(message, keys) {
  const out = {};
  for (const key of keys) if (message[key] !== undefined) out[key] = message[key];
  return out;
}

const cometd = new CometD();
cometd.configure({
  url: options.url,
  requestHeaders: { Authorization: `${options.scheme} ${options.token}` },
  logLevel: "warn",
});

// channel -> replay id to subscribe from (updated from every received event)
const replay = new Map();
const wanted = new Set();

cometd.registerExtension("replay", {
  outgoing(message) {
    if (message.channel === "/meta/subscribe" && replay.has(message.subscription)) {
      message.ext = message.ext || {};
      message.ext.replay = { [message.subscription]: replay.get(message.subscription) };
    }
    return message;
  },
  incoming(message) {
    const id = message.data && message.data.event && message.data.event.replayId;
    if (!message.channel.startsWith("/meta/") && typeof id === "number") {
      replay.set(message.channel, id);
    }
    return message;
  },
});

function subscribe(channel) {
  try {
    cometd.subscribe(
      channel,
      (message) => emit({ event: "message", channel: message.channel, data: message.data }),
      (reply) => emit({ event: "subscribed", channel, ...pick(reply, ["successful", "error"]) }),
    );
  } catch (error) {
    // e.g. the client refuses a PushTopic filter ("/topic/X?Field=value") as a channel name
    emit({ event: "subscribed", channel, successful: false, error: String(error.message || error) });
  }
}

cometd.addListener("/meta/handshake", (message) => {
  emit({ event: "handshake", ...pick(message, ["successful", "clientId", "error", "advice", "ext"]) });
  if (message.successful) {
    cometd.batch(() => {
      for (const channel of wanted) subscribe(channel);
    });
  }
});
cometd.addListener("/meta/connect", (message) => {
  if (!message.successful) emit({ event: "connect_failed", ...pick(message, ["error", "advice"]) });
});
// Salesforce (API 64.0+) may end a session with a /meta/disconnect; its docs ask the client to
// listen for it and connect again, which is what this does (the CometD client stops otherwise).
let disconnecting = false;
cometd.addListener("/meta/disconnect", (message) => {
  if (disconnecting) return;
  emit({ event: "server_disconnect", message: pick(message, ["successful", "clientId", "error"]) });
  setTimeout(() => cometd.handshake(), 0);
});

cometd.handshake();

const input = readline.createInterface({ input: process.stdin });
input.on("line", (text) => {
  if (!text.trim()) return;
  let command;
  try {
    command = JSON.parse(text);
  } catch (error) {
    emit({ event: "error", error: "not JSON: " + text });
    return;
  }
  if (command.op === "subscribe") {
    if (!replay.has(command.channel)) replay.set(command.channel, command.replay ?? -1);
    wanted.add(command.channel);
    subscribe(command.channel);
  } else if (command.op === "disconnect") {
    disconnecting = true;
    cometd.disconnect(() => {
      emit({ event: "disconnected" });
      exit(0);
    });
  } else {
    emit({ event: "error", error: "unknown op " + command.op });
  }
});
input.on("close", () => exit(0));
process.on("SIGTERM", () => exit(0));
process.on("SIGINT", () => exit(0));
