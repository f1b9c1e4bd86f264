// Real servers for the tests: the development app under uvicorn, on a free loopback port, in a
// temporary directory, from the project's virtual environment (PYTHON overrides it).
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { ChartsClient } from "../dist/charts-client.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const PYTHON = process.env.PYTHON ?? path.join(ROOT, ".venv", "bin", "python");
export const SECRET_KEY = "node-tests-secret-key-0123456789-abcdefghijklmnop";

const BASE_ENV = {
  ENVIRONMENT: "development",
  ENABLE_PERSISTENCE: "false",
  ENABLE_RATE_LIMITING: "false",
  ENABLE_AUTH: "false",
  LOG_LEVEL: "WARNING",
  SECRET_KEY,
  PYTHONUNBUFFERED: "1",
};

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Start a server with `settings` (names as in the environment, e.g. ENABLE_AUTH). */
export async function startServer(settings = {}, { port, workdir } = {}) {
  port ??= await freePort();
  workdir ??= mkdtempSync(path.join(os.tmpdir(), "charts-client-test-"));
  const log = path.join(workdir, "server.log");
  const proc = spawn(
    PYTHON,
    ["-m", "uvicorn", "lightweight_charts_pro_backend.app:create_app", "--factory",
      "--host", "127.0.0.1", "--port", String(port), "--log-level", "warning"],
    {
      cwd: workdir,
      env: { ...process.env, ...BASE_ENV, ...settings },
      stdio: ["ignore", openSync(log, "a"), openSync(log, "a")],
    },
  );
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`server exited: ${readFileSync(log, "utf8").slice(-3000)}`);
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`server did not start: ${readFileSync(log, "utf8").slice(-3000)}`);
    }
    await sleep(100);
  }
  return {
    url,
    port,
    workdir,
    settings,
    log: () => readFileSync(log, "utf8"),
    /** Stop with SIGTERM (sockets are closed with 1001), SIGKILL after 20 s. */
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    },
    /** A new server on the same port and directory (the database survives). */
    async restart() {
      await this.stop();
      return startServer(settings, { port, workdir });
    },
    cleanup() {
      rmSync(workdir, { recursive: true, force: true });
    },
  };
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves once `predicate()` is true; rejects after `timeoutMs`. */
export async function waitFor(predicate, timeoutMs = 5000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** The next event `name` of `emitter` (with `on` returning an unsubscribe function). */
export function nextEvent(emitter, name, timeoutMs = 5000, predicate = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${name} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = emitter.on(name, (payload) => {
      if (!predicate(payload)) return;
      clearTimeout(timer);
      off();
      resolve(payload);
    });
  });
}

/** An HS256 JWT signed with SECRET_KEY, as `charts-backend token create` makes them. */
export function jwt(claims, secret = SECRET_KEY) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const body = `${encode({ alg: "HS256", typ: "JWT" })}.${encode({ iat: now, exp: now + 3600, ...claims })}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

export function candles(start, count, step = 60) {
  return Array.from({ length: count }, (_, i) => ({
    time: start + i * step,
    open: 10 + i,
    high: 12 + i,
    low: 9 + i,
    close: 11 + i,
  }));
}

/** `makeClient(options)` makes a ChartsClient that `closeAll()` closes: registered with `afterEach`,
 * so that a failed test leaves no socket reconnecting (which would keep Node running). */
export function openClients() {
  const clients = [];
  return {
    makeClient(options) {
      const client = new ChartsClient(options);
      clients.push(client);
      return client;
    },
    closeAll() {
      for (const client of clients.splice(0)) client.close();
    },
  };
}

/** The global WebSocket, each instance kept so that a test can cut a connection, lose the
 * frames its `lose` predicate picks, or read the frames it sent (`sent`, parsed). */
export function trackedWebSocket() {
  const opened = [];
  class Tracked extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.offered = protocols;
      this.lose = () => false;
      this.sent = [];
      opened.push(this);
    }

    send(data) {
      this.sent.push(JSON.parse(data));
      super.send(data);
    }

    addEventListener(type, listener, options) {
      const filtered = type === "message" ? (event) => this.lose(event.data) || listener(event) : listener;
      super.addEventListener(type, filtered, options);
    }
  }
  return { Tracked, opened };
}
