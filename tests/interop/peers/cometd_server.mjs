// The CometD project's own Bayeux server for Node.js (cometd-nodejs-server 1.2.1), for sfstream's
// interop tests, on 127.0.0.1 only.
//
//   node cometd_server.mjs [--port N] [--timeout SECONDS] [--ack] [--verbose]
//
// --port 0 (the default) picks a free port; give the same port again to bring a restarted server
// back at the same URL. --timeout is CometD's long-poll hold in seconds (default 5). --ack installs
// CometD's AcknowledgedMessagesExtension (the server side of ext.ack).
//
// stdout carries JSON lines only: first {"port": N} once listening, then one line per server event
// ({"event": "handshake" | "subscribe" | "unsubscribe" | "publish" | "disconnect", "clientId": ...,
// "channel": ..., "data": ...}), the same shapes as faye_server.mjs, so tests can wait for them.
// With --verbose, stderr shows every Bayeux message in and out.
//
// Bayeux endpoint: http://127.0.0.1:PORT/cometd. The server speaks long polling only: it has no
// WebSocket support, and an upgrade request gets the plain HTTP answer of a Bayeux POST endpoint.
// POST /publish {"channel": "/foo", "data": {...}} publishes server-side and answers 200.
//
// Exits 0 on SIGTERM, SIGINT or when stdin closes (so it never outlives the test that started it).

import http from "node:http";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

const require = createRequire(import.meta.url);
const cometd = require("cometd-nodejs-server");
const { AcknowledgedMessagesExtension } = require("cometd-nodejs-server/ack-extension");

const { values: options } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    timeout: { type: "string", default: "5" },
    ack: { type: "boolean", default: false },
    verbose: { type: "boolean", default: false },
  },
});
const port = Number.parseInt(options.port, 10);
const timeoutMs = Math.round(Number.parseFloat(options.timeout) * 1000);
const verbose = options.verbose;
const MOUNT = "/cometd";

function emit(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

const LOG_LIMIT = 4000;

function log(...parts) {
  if (!verbose) return;
  let text = parts.join(" ");
  if (text.length > LOG_LIMIT) text = `${text.slice(0, LOG_LIMIT)}... (${text.length} chars)`;
  process.stderr.write(`[cometd ${new Date().toISOString()}] ${text}\n`);
}

function exit(code) {
  process.stdout.write("", () => process.exit(code));
  setTimeout(() => process.exit(code), 2000).unref();
}

const server = cometd.createCometDServer({ timeout: timeoutMs, maxInterval: 2 * timeoutMs });
if (options.ack) server.addExtension(new AcknowledgedMessagesExtension());

server.addExtension({
  incoming(cometdServer, session, message, callback) {
    log("<-", JSON.stringify(message));
    const channel = String(message.channel);
    if (!channel.startsWith("/meta/") && session) {
      emit({ event: "publish", clientId: session.id, channel, data: message.data });
    }
    callback(undefined, true);
  },
  outgoing(cometdServer, sender, session, message, callback) {
    log("->", JSON.stringify(message));
    callback(undefined, true);
  },
});
server.addListener("sessionAdded", (session) => emit({ event: "handshake", clientId: session.id }));
server.addListener("sessionRemoved", (session, timeout) =>
  emit({ event: "disconnect", clientId: session.id, timeout: Boolean(timeout) }),
);
server.addListener("subscribed", (channel, session) =>
  emit({ event: "subscribe", clientId: session.id, channel: channel.name }),
);
server.addListener("unsubscribed", (channel, session) =>
  emit({ event: "unsubscribe", clientId: session.id, channel: channel.name }),
);

function readBody(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}

function answer(response, status, body) {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(text),
  });
  response.end(text);
}

async function publishRoute(request, response) {
  let channel, data;
  try {
    ({ channel, data } = JSON.parse(await readBody(request)));
    if (typeof channel !== "string") throw new Error("channel must be a string");
  } catch (error) {
    answer(response, 400, { ok: false, error: String(error) });
    return;
  }
  server.createServerChannel(channel).publish(null, data, (error) => {
    if (error) answer(response, 500, { ok: false, error: String(error) });
    else answer(response, 200, { ok: true });
  });
}

function route(request, response) {
  const { pathname } = new URL(request.url, "http://127.0.0.1");
  if (pathname === MOUNT || pathname.startsWith(MOUNT + "/")) {
    log("HTTP", request.method, request.url, `upgrade=${request.headers.upgrade ?? "-"}`);
    server.handle(request, response);
    return;
  }
  if (pathname === "/publish" && request.method === "POST") {
    publishRoute(request, response);
    return;
  }
  answer(response, 404, { ok: false, error: `no route for ${request.method} ${pathname}` });
}

const httpServer = http.createServer(route);

function listen(attemptsLeft) {
  httpServer.once("error", (error) => {
    if (error.code === "EADDRINUSE" && attemptsLeft > 0) {
      setTimeout(() => listen(attemptsLeft - 1), 100);
      return;
    }
    process.stderr.write(`cometd_server: cannot listen on 127.0.0.1:${port}: ${error.message}\n`);
    exit(2);
  });
  httpServer.listen(port, "127.0.0.1", () => {
    emit({ port: httpServer.address().port });
  });
}
listen(50);

let stopping = false;
function stop(reason) {
  if (stopping) return;
  stopping = true;
  log("stopping:", reason);
  server.close();
  httpServer.close(() => exit(0));
  httpServer.closeAllConnections();
  setTimeout(() => exit(0), 2000).unref();
}

process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
process.stdin.on("end", () => stop("stdin closed"));
process.stdin.on("error", () => stop("stdin error"));
process.stdin.resume();
