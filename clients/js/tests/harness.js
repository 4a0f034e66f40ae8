// What the SDK's tests share: the server tests/test_sdk_node.py started (its URL, a tenant and
// a token per user, from the environment), clients closed after each test, event recorders that
// wait for events rather than for time, and a TCP proxy that can drop and refuse connections.

import net from "node:net";

import { ChatClient } from "../chat.js";

export const WAIT_MS = 30000;
// Short waits between attempts, so a reconnect shows within a test's patience.
export const RECONNECT = { baseDelayMs: 50, maxDelayMs: 400 };
// Node 20's WebSocket never reports a refused connection: only the SDK's time limit ends it.
export const CONNECT_TIMEOUT_MS = 1000;

const env = process.env;
export const server = env.CHAT_SDK_TEST_URL
  ? { url: env.CHAT_SDK_TEST_URL, tenant: env.CHAT_SDK_TEST_TENANT, tokens: JSON.parse(env.CHAT_SDK_TEST_TOKENS) }
  : null;
export const skip = server ? false : "needs a server: run `python -m pytest tests/test_sdk_node.py` from the repository root";

/** A ChatClient as `user` (a name the server side made a token for), closed when the test ends. */
export function client(t, user, options = {}) {
  const chat = new ChatClient({ baseUrl: server.url, tenantId: server.tenant, token: server.tokens[user], reconnect: RECONNECT, connectTimeoutMs: CONNECT_TIMEOUT_MS, ...options });
  t.after(() => chat.close());
  return chat;
}

export function userId(user) {
  return JSON.parse(Buffer.from(server.tokens[user].split(".")[1], "base64url")).user_id;
}

/** Every event of `types` the client emits, in order, with `until(predicate)` to wait for one. */
export function record(chat, ...types) {
  const events = [];
  const waiters = new Set();
  for (const type of types) {
    chat.on(type, (event) => {
      events.push({ type, ...event });
      waiters.forEach((wake) => wake());
    });
  }
  const until = async (predicate, what = "the event") => {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const found = events.find(predicate);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${WAIT_MS} ms; saw ${JSON.stringify(events)}`);
      await new Promise((resolve) => {
        const wake = () => {
          waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, left);
        waiters.add(wake);
      });
    }
  };
  return Object.defineProperty(events, "until", { value: until });
}

/** A WebSocket class that keeps every frame the SDK sends, to check what went over the wire. */
export function recordingWebSocket() {
  const sent = [];
  class RecordingWebSocket extends WebSocket {
    send(data) {
      sent.push(JSON.parse(data));
      super.send(data);
    }
  }
  return { WebSocket: RecordingWebSocket, sent };
}

export async function createGroup(chat, members) {
  return chat.api("POST", "conversations/", { type: "group", title: "sdk test", participant_ids: members.map(userId) });
}

/** Stored messages of a conversation, oldest first (one page: tests stay under 100). */
export async function history(chat, conversationId) {
  return (await chat.api("GET", `conversations/${conversationId}/messages/?limit=100`)).results;
}

/**
 * A TCP proxy in front of the server: `down()` cuts every connection and refuses new ones until
 * `up()`; `mute()` keeps passing the client's bytes to the server but drops the server's answers,
 * as a network that fails in the middle of an exchange does.
 */
export class Proxy {
  #server;
  #pairs = new Set();
  #refusing = false;
  #muted = false;

  static async start(t) {
    const proxy = new Proxy();
    const target = new URL(server.url);
    proxy.#server = net.createServer((downstream) => proxy.#accept(downstream, target));
    await new Promise((resolve) => proxy.#server.listen(0, "127.0.0.1", resolve));
    proxy.url = `http://127.0.0.1:${proxy.#server.address().port}`;
    t.after(() => proxy.#close());
    return proxy;
  }

  #accept(downstream, target) {
    if (this.#refusing) {
      downstream.destroy();
      return;
    }
    const upstream = net.connect(Number(target.port), target.hostname);
    const pair = [downstream, upstream];
    this.#pairs.add(pair);
    const end = () => {
      downstream.destroy();
      upstream.destroy();
      this.#pairs.delete(pair);
    };
    downstream.on("data", (chunk) => upstream.write(chunk));
    upstream.on("data", (chunk) => this.#muted || downstream.write(chunk));
    for (const socket of pair) {
      socket.on("error", end);
      socket.on("close", end);
    }
  }

  mute() {
    this.#muted = true;
  }

  down() {
    this.#refusing = true;
    this.#muted = false;
    for (const pair of this.#pairs) pair.forEach((socket) => socket.destroy());
    this.#pairs.clear();
  }

  up() {
    this.#refusing = false;
  }

  async #close() {
    this.down();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}
