// A Faye 1.4.3 Bayeux server for sfstream's interop tests, on 127.0.0.1 only.
//
//   node faye_server.mjs [--port N] [--timeout SECONDS] [--no-websocket] [--verbose]
//
// --port 0 (the default) picks a free port; give the same port again to bring a restarted server
// back at the same URL. --timeout is Faye's long-poll hold in seconds (default 5). Faye serves
// WebSocket and long polling on the same endpoint; --no-websocket refuses every WebSocket upgrade
// with HTTP 400 (as a proxy that does not pass upgrades on), so clients must fall back.
//
// stdout carries JSON lines only: first {"port": N} once listening, then one line per server event
// ({"event": "handshake" | "subscribe" | "unsubscribe" | "publish" | "disconnect", "clientId": ...,
// "channel": ..., "data": ...}; a publish whose data is over 64 KiB of JSON has "size" instead of
// "data"), so a test can wait until a client is (re)subscribed, and
// {"event": "concurrent-connect", ...} when a client breaks the one-held-connect rule.
// With --verbose, stderr shows the wire traffic: each HTTP request, every Bayeux message in and out,
// and each HTTP response.
//
// Bayeux endpoint: http://127.0.0.1:PORT/bayeux (and any sub-path, e.g. /bayeux/connect).
// POST /publish {"channel": "/foo", "data": {...}} publishes server-side through Faye's in-process
// client and answers 200 {"ok": true} once Faye accepted the publication.
// Subscribing or publishing to a channel under /denied/ is refused (403, "successful": false).
//
// Exits 0 on SIGTERM, SIGINT or when stdin closes (so it never outlives the test that started it).

import http from "node:http";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

const require = createRequire(import.meta.url);
const faye = require("faye");

const { values: options } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    timeout: { type: "string", default: "5" },
    verbose: { type: "boolean", default: false },
    "no-websocket": { type: "boolean", default: false },
  },
});
const port = Number.parseInt(options.port, 10);
const timeout = Number.parseFloat(options.timeout);
const verbose = options.verbose;
const MOUNT = "/bayeux";

function emit(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

// Log lines are cut to this many characters (a test may send megabytes).
const LOG_LIMIT = 4000;

function log(...parts) {
  if (!verbose) return;
  let text = parts.join(" ");
  if (text.length > LOG_LIMIT) text = `${text.slice(0, LOG_LIMIT)}... (${text.length} chars)`;
  process.stderr.write(`[faye ${new Date().toISOString()}] ${text}\n`);
}

// Exit once stdout has taken every line written before (a large line may still be queued).
function exit(code) {
  process.stdout.write("", () => process.exit(code));
  setTimeout(() => process.exit(code), 2000).unref();
}

const bayeux = new faye.NodeAdapter({ mount: MOUNT, timeout });

if (verbose) {
  // Messages of the in-process client (behind POST /publish) have no HTTP request; its own
  // /meta/connect polls are left out of the log.
  const show = (arrow, message, request) => {
    if (!request && message.channel === "/meta/connect") return;
    log(request ? arrow : `${arrow} [in-process]`, JSON.stringify(message));
  };
  bayeux.addExtension({
    incoming(message, request, callback) {
      show("<-", message, request);
      callback(message);
    },
    outgoing(message, request, callback) {
      show("->", message, request);
      callback(message);
    },
  });
}

// Subscriptions and publications under /denied/ are refused, so tests can see a server refusal
// (Faye replies successful: false with this error).
const DENIED = "/denied/";
bayeux.addExtension({
  incoming(message, request, callback) {
    const channel = String(message.channel);
    if (channel === "/meta/subscribe" && String(message.subscription).startsWith(DENIED)) {
      message.error = `403:${message.subscription}:Subscription denied`;
    } else if (channel.startsWith(DENIED)) {
      message.error = `403:${channel}:Publish denied`;
    }
    callback(message);
  },
});

// Faye never answers the older of two concurrent /meta/connect requests of one client (it hangs
// until the client gives up): report every connect that arrives while one is still held, as
// {"event": "concurrent-connect", "clientId": ..., "id": ...} on stdout. The in-process client
// (no HTTP request) is left out.
const heldConnects = new Map(); // clientId -> connects received and not yet answered
const connectOf = new WeakMap(); // HTTP request -> clientId of the connect it carries
bayeux.addExtension({
  incoming(message, request, callback) {
    if (request && message.channel === "/meta/connect" && message.clientId) {
      const held = heldConnects.get(message.clientId) ?? 0;
      if (held > 0) emit({ event: "concurrent-connect", clientId: message.clientId, id: message.id });
      heldConnects.set(message.clientId, held + 1);
      connectOf.set(request, message.clientId);
    }
    callback(message);
  },
  outgoing(message, request, callback) {
    // A refused connect's reply has no clientId: find the client through the request.
    const clientId = request && message.channel === "/meta/connect" && connectOf.get(request);
    if (clientId) {
      connectOf.delete(request);
      const held = (heldConnects.get(clientId) ?? 1) - 1;
      if (held > 0) heldConnects.set(clientId, held);
      else heldConnects.delete(clientId);
    }
    callback(message);
  },
});

for (const event of ["handshake", "disconnect"]) {
  bayeux.on(event, (clientId) => emit({ event, clientId }));
}
for (const event of ["subscribe", "unsubscribe"]) {
  bayeux.on(event, (clientId, channel) => emit({ event, clientId, channel }));
}
// A publish event carries the data only when it is small; a large one gives its JSON size.
const EVENT_DATA_LIMIT = 64 * 1024;
bayeux.on("publish", (clientId, channel, data) => {
  const size = JSON.stringify(data ?? null).length;
  if (size > EVENT_DATA_LIMIT) emit({ event: "publish", clientId, channel, size });
  else emit({ event: "publish", clientId, channel, data });
});

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
  try {
    // A Faye Publication is a thenable: it settles when the server has processed the message.
    await bayeux.getClient().publish(channel, data);
    answer(response, 200, { ok: true });
  } catch (error) {
    answer(response, 500, { ok: false, error: String(error && (error.message || error)) });
  }
}

function route(request, response) {
  const { pathname } = new URL(request.url, "http://127.0.0.1");
  if (pathname === MOUNT || pathname.startsWith(MOUNT + "/")) {
    if (verbose) {
      log(
        "HTTP",
        request.method,
        request.url,
        `content-type=${request.headers["content-type"] ?? "-"}`,
        `content-length=${request.headers["content-length"] ?? "-"}`,
        `transfer-encoding=${request.headers["transfer-encoding"] ?? "-"}`,
      );
      const end = response.end.bind(response);
      response.end = (chunk, ...rest) => {
        log("HTTP", response.statusCode, request.method, request.url, chunk ? String(chunk) : "");
        return end(chunk, ...rest);
      };
    }
    bayeux.handle(request, response);
    return;
  }
  if (pathname === "/publish" && request.method === "POST") {
    publishRoute(request, response);
    return;
  }
  answer(response, 404, { ok: false, error: `no route for ${request.method} ${pathname}` });
}

const server = http.createServer(route);
server.on("upgrade", (request, socket, head) => {
  if (options["no-websocket"]) {
    log("HTTP", request.method, request.url, "upgrade refused (--no-websocket)");
    socket.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    return;
  }
  log("HTTP", request.method, request.url, "upgrade to WebSocket");
  bayeux.handleUpgrade(request, socket, head);
});

// A fixed port may still be held for a moment by the previous server's process: retry briefly.
function listen(attemptsLeft) {
  server.once("error", (error) => {
    if (error.code === "EADDRINUSE" && attemptsLeft > 0) {
      setTimeout(() => listen(attemptsLeft - 1), 100);
      return;
    }
    process.stderr.write(`faye_server: cannot listen on 127.0.0.1:${port}: ${error.message}\n`);
    exit(2);
  });
  server.listen(port, "127.0.0.1", () => {
    emit({ port: server.address().port });
  });
}
listen(50);

let stopping = false;
function stop(reason) {
  if (stopping) return;
  stopping = true;
  log("stopping:", reason);
  bayeux.close();
  server.close(() => exit(0));
  // Held long polls keep their sockets open: drop them so close() completes at once.
  server.closeAllConnections();
  setTimeout(() => exit(0), 2000).unref();
}

process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
process.stdin.on("end", () => stop("stdin closed"));
process.stdin.on("error", () => stop("stdin error"));
process.stdin.resume();
