// The reference CometD JavaScript client (cometd 9.0.0 + cometd-nodejs-client 2.0.0), driven by
// JSON lines, for sfstream's interop tests.
//
//   node cometd_client.mjs --url http://127.0.0.1:PORT/bayeux [--transport long-polling|websocket]
//                          [--log-level warn|info|debug]
//
// --transport picks the one transport the client may use (default long-polling, like sfstream's).
// Run it with the current directory set to this folder (ES modules ignore NODE_PATH).
// It handshakes at once. Commands, one JSON object a line on stdin ("id" is optional and is echoed
// back in the matching reply):
//   {"op": "subscribe",   "channel": "/foo", "id": 1}  -> {"event": "subscribed", ...}
//   {"op": "unsubscribe", "channel": "/foo", "id": 2}  -> {"event": "unsubscribed", ...}
//   {"op": "publish", "channel": "/foo", "data": {...}, "id": 3}  -> {"event": "published", ...}
//   {"op": "disconnect", "id": 4}  -> {"event": "disconnected", ...}, then the process exits
// Replies carry "successful" and, when the server refused, "error".
// Events, one JSON object a line on stdout:
//   {"event": "handshake", "successful": true, "clientId": "..."}   (every handshake, re-handshakes too)
//   {"event": "message", "channel": "/foo", "data": {...}, "subscription": "/foo"}
//   {"event": "error", "error": "..."}                               (a command it could not run)
// After a re-handshake (e.g. the server restarted and forgot us) it subscribes again to every channel
// it had, as a CometD application must. It exits when stdin closes, on SIGTERM and on SIGINT.
// The client's own logging goes to stderr: stdout carries JSON lines only.

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
    transport: { type: "string", default: "long-polling" },
    "log-level": { type: "string", default: "warn" },
  },
});
if (!options.url) {
  process.stderr.write("cometd_client: --url is required\n");
  process.exit(2);
}

function emit(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

// Exit once stdout has taken every line written before (a large line may still be queued).
function exit(code) {
  process.stdout.write("", () => process.exit(code));
  setTimeout(() => process.exit(code), 2000).unref();
}

function outcome(reply) {
  const result = { successful: Boolean(reply && reply.successful) };
  if (reply && reply.error !== undefined) result.error = reply.error;
  if (reply && !reply.successful && reply.failure) {
    const reason = reply.failure.reason || (reply.failure.exception && String(reply.failure.exception));
    if (reason) result.failure = reason;
  }
  return result;
}

const cometd = new CometD();
if (!cometd.findTransport(options.transport)) {
  process.stderr.write(`cometd_client: unknown transport ${options.transport}\n`);
  process.exit(2);
}
for (const type of cometd.getTransportTypes()) {
  if (type !== options.transport) cometd.unregisterTransport(type);
}
cometd.configure({ url: options.url, logLevel: options["log-level"] });

/** channel -> subscription handle, for the channels the driver asked for. */
const subscriptions = new Map();
let handshakes = 0;
let exiting = false;

function onMessage(subscription) {
  return (message) => {
    emit({ event: "message", channel: message.channel, data: message.data, subscription });
  };
}

function subscribe(channel, id) {
  const handle = cometd.subscribe(channel, onMessage(channel), (reply) => {
    emit({ event: "subscribed", id, channel, ...outcome(reply) });
  });
  subscriptions.set(channel, handle);
}

cometd.addListener("/meta/handshake", (reply) => {
  emit({ event: "handshake", clientId: reply.clientId ?? null, ...outcome(reply) });
  if (!reply.successful) return;
  handshakes += 1;
  if (handshakes > 1 && subscriptions.size > 0) {
    // The CometD client drops its subscriptions on a re-handshake: make them again.
    const channels = [...subscriptions.keys()];
    cometd.batch(() => {
      for (const channel of channels) subscribe(channel, null);
    });
  }
});

function run(command) {
  const { op, channel, data } = command;
  const id = command.id ?? null;
  switch (op) {
    case "subscribe":
      subscribe(channel, id);
      break;
    case "unsubscribe": {
      const handle = subscriptions.get(channel);
      if (!handle) {
        emit({ event: "unsubscribed", id, channel, successful: false, error: "not subscribed" });
        break;
      }
      subscriptions.delete(channel);
      cometd.unsubscribe(handle, (reply) => {
        emit({ event: "unsubscribed", id, channel, ...outcome(reply) });
      });
      break;
    }
    case "publish":
      cometd.publish(channel, data ?? {}, (reply) => {
        emit({ event: "published", id, channel, ...outcome(reply) });
      });
      break;
    case "disconnect":
      quit(id);
      break;
    default:
      emit({ event: "error", id, error: `unknown op ${JSON.stringify(op)}` });
  }
}

function quit(id) {
  if (exiting) return;
  exiting = true;
  setTimeout(() => exit(0), 3000).unref();
  if (cometd.isDisconnected()) {
    emit({ event: "disconnected", id, successful: true });
    exit(0);
    return;
  }
  cometd.disconnect((reply) => {
    emit({ event: "disconnected", id, ...outcome(reply) });
    exit(0);
  });
}

const input = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
input.on("line", (line) => {
  if (!line.trim()) return;
  let command;
  try {
    command = JSON.parse(line);
  } catch (error) {
    emit({ event: "error", error: `not JSON: ${line}` });
    return;
  }
  try {
    run(command);
  } catch (error) {
    emit({ event: "error", id: command.id ?? null, error: String(error && error.message) });
  }
});
input.on("close", () => quit(null));

process.on("SIGTERM", () => exit(0));
process.on("SIGINT", () => exit(0));

cometd.handshake();
