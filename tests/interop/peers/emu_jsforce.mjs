// jsforce 3 streaming against the sfstream emulator, driven by JSON lines (sfstream interop tests).
//
//   node emu_jsforce.mjs --instance-url URL --token TOKEN [--version 50.0]
//   node emu_jsforce.mjs --login-url URL --client-id ID --client-secret S --username U --password P
//
// With --login-url it logs in through the OAuth 2.0 password flow (conn.login), else it uses the
// access token it was given. Run it with the current directory set to this folder.
// Commands, one JSON object a line on stdin:
//   {"op": "subscribe", "channel": "/event/X__e", "replay": -2}   createClient([Replay, AuthFailure])
//   {"op": "topic", "name": "Accounts"}                           conn.streaming.topic(name).subscribe
//   {"op": "publish", "sobject": "X__e", "fields": {...}}         conn.sobject(X).create(fields)
//   {"op": "push", "channel": "/u/x", "payload": "..."}           conn.streaming.channel(x).push
//   {"op": "disconnect"}                                          every Faye client disconnects
// Lines on stdout:
//   {"event": "ready", "instanceUrl": ..., "version": ...}
//   {"event": "meta", "client": N, "channel": "/meta/...", "successful": ..., "error"?, "advice"?, "ext"?}
//   {"event": "subscribed", "channel": ...} / {"event": "subscribe_failed", "channel": ..., "error": ...}
//   {"event": "message", "client": N, "channel": ..., "data": {...}}
//   {"event": "auth_failure", "client": N, "message": {...}}      jsforce's AuthFailure extension fired
//   {"event": "published", "result": {...}} / {"event": "pushed", "result": {...}}
//   {"event": "error", "op": ..., "error": "..."}
// It exits when stdin closes, on SIGTERM and on SIGINT.

import { createRequire } from "node:module";
import readline from "node:readline";
import { format, parseArgs } from "node:util";

for (const level of ["log", "info", "debug", "warn", "error", "trace"]) {
  console[level] = (...args) => process.stderr.write(`[jsforce] ${format(...args)}\n`);
}

const require = createRequire(import.meta.url);
const jsforce = require("jsforce");
const { StreamingExtension } = require("jsforce/api/streaming");

const { values: options } = parseArgs({
  options: {
    "instance-url": { type: "string" },
    token: { type: "string" },
    version: { type: "string", default: "50.0" },
    "login-url": { type: "string" },
    "client-id": { type: "string" },
    "client-secret": { type: "string" },
    username: { type: "string" },
    password: { type: "string" },
  },
});

function emit(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

function exit(code) {
  process.stdout.write("", () => process.exit(code));
  setTimeout(() => process.exit(code), 2000).unref();
}

const clients = [];

// Reports every incoming meta message, so that a test can see handshakes and failures.
function metaLogger(index) {
  return {
    incoming(message, callback) {
      if (message.channel.startsWith("/meta/")) {
        const line = { event: "meta", client: index, channel: message.channel, successful: message.successful };
        for (const key of ["error", "advice", "ext", "subscription"]) {
          if (message[key] !== undefined) line[key] = message[key];
        }
        emit(line);
      }
      callback(message);
    },
  };
}

function track(client) {
  const index = clients.length;
  clients.push(client);
  client.addExtension(metaLogger(index));
  return index;
}

let conn;
if (options["login-url"]) {
  conn = new jsforce.Connection({
    loginUrl: options["login-url"],
    version: options.version,
    oauth2: {
      loginUrl: options["login-url"],
      clientId: options["client-id"],
      clientSecret: options["client-secret"],
      redirectUri: "http://localhost/callback",
    },
  });
  try {
    await conn.login(options.username, options.password);
  } catch (error) {
    emit({ event: "error", op: "login", error: String(error && error.message ? error.message : error) });
    exit(1);
  }
} else {
  conn = new jsforce.Connection({
    instanceUrl: options["instance-url"],
    accessToken: options.token,
    version: options.version,
  });
}
emit({ event: "ready", instanceUrl: conn.instanceUrl, version: conn.version });

function subscribeWith(client, index, channel, subscribe) {
  const subscription = subscribe((data) => emit({ event: "message", client: index, channel, data }));
  subscription.then(
    () => emit({ event: "subscribed", channel }),
    (error) => emit({ event: "subscribe_failed", channel, error: String(error && error.message ? error.message : error) }),
  );
}

async function run(command) {
  switch (command.op) {
    case "subscribe": {
      const extensions = [
        new StreamingExtension.Replay(command.channel, command.replay ?? -1),
        new StreamingExtension.AuthFailure((message) => emit({ event: "auth_failure", client: index, message })),
      ];
      const client = conn.streaming.createClient(extensions);
      const index = track(client);
      subscribeWith(client, index, command.channel, (listener) => client.subscribe(command.channel, listener));
      break;
    }
    case "topic": {
      const topic = conn.streaming.topic(command.name);
      const client = conn.streaming._getFayeClient("/topic/" + command.name);
      const index = clients.includes(client) ? clients.indexOf(client) : track(client);
      subscribeWith(client, index, "/topic/" + command.name, (listener) => topic.subscribe(listener));
      break;
    }
    case "publish": {
      const result = await conn.sobject(command.sobject).create(command.fields);
      emit({ event: "published", result });
      break;
    }
    case "push": {
      const result = await conn.streaming.channel(command.channel).push({ payload: command.payload, userIds: [] });
      emit({ event: "pushed", result });
      break;
    }
    case "disconnect": {
      for (const client of clients) client.disconnect();
      emit({ event: "disconnected" });
      exit(0);
      break;
    }
    default:
      emit({ event: "error", op: command.op, error: "unknown op" });
  }
}

const input = readline.createInterface({ input: process.stdin });
input.on("line", (text) => {
  if (!text.trim()) return;
  let command;
  try {
    command = JSON.parse(text);
  } catch (error) {
    emit({ event: "error", op: null, error: "not JSON: " + text });
    return;
  }
  run(command).catch((error) =>
    emit({ event: "error", op: command.op, error: String(error && error.message ? error.message : error) }),
  );
});
input.on("close", () => exit(0));
process.on("SIGTERM", () => exit(0));
process.on("SIGINT", () => exit(0));
