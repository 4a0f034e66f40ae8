/**
 * The chat server's JavaScript SDK: one WebSocket that reconnects by itself, resumes every joined
 * conversation with `since_seq`, retries every request until the server answers it (sends keep
 * their `client_msg_id`, so each is stored once), and hands each stream event to its handlers
 * once. An ES module with no dependencies and no build step, for browsers and Node 20+.
 * The contract it keeps is the server's: docs/wire-protocol.md, docs/delivery.md; its own
 * behaviour is described in docs/sdk.md.
 */

export const API_PREFIX = "/api/notifications/chat/";

// Close codes (docs/wire-protocol.md). A refused token or tenant never gets better by retrying;
// a socket that fell behind (4408) or flooded (4429) waits longer than after an ordinary drop.
const AUTH_CLOSE_CODES = new Set([4401, 4403]);
const BACK_OFF_CLOSE_CODES = new Set([4408, 4429]);
const BACK_OFF_ATTEMPTS = 4; // the wait after those starts at 2 ** 4 × baseDelayMs

// Errors that mean "not done, ask again": the request stays queued and is sent again.
const RATE_LIMITED = "rate_limited";
const STORAGE_UNAVAILABLE = "storage_unavailable";
const SHUTTING_DOWN = "shutting_down"; // the socket closes with 1001 next; resent after reconnecting

const DEFAULT_RECONNECT = { baseDelayMs: 500, maxDelayMs: 30000 };
// A connection that is not greeted within this long is given up and tried again: a connect can
// hang on a broken network, and Node 20's WebSocket never reports a refused one.
const DEFAULT_CONNECT_TIMEOUT_MS = 20000;
// The server forgets a typist after TYPING_TTL_SECS (8 s); a refresh every 3 s keeps it shown.
const DEFAULT_TYPING_INTERVAL_MS = 3000;

/** A refusal from the server: an `error` event answering a request, a REST error, or the client's own end. */
export class ChatError extends Error {
  constructor(code, message, { details, status, closeCode } = {}) {
    super(message);
    this.name = "ChatError";
    this.code = code;
    if (details !== undefined) this.details = details;
    if (status !== undefined) this.status = status;
    if (closeCode !== undefined) this.closeCode = closeCode;
  }
}

/** A fresh `client_msg_id`. Not `crypto.randomUUID`: pages served over plain http lack it. */
function newClientMsgId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * Where an event sits in its conversation's stream: the top-level `seq` every stream event
 * carries, or, from a server that numbers messages only, a new message's `message.seq`.
 */
function streamPosition(event) {
  if (event.seq != null) return event.seq;
  return event.type === "new_message" ? event.message?.seq : undefined;
}

function leftEvent(conversationId) {
  return { type: "conversation_left", conversation_id: conversationId };
}

function conversationOf(event) {
  return event.conversation_id ?? event.message?.conversation_id ?? event.reaction?.conversation_id;
}

/** Only the fields that have a value: the server refuses unknown and `undefined`-looking ones. */
function defined(fields) {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
}

export class ChatClient {
  #baseUrl;
  #tenantId;
  #token;
  #getToken;
  #WebSocket;
  #fetch;
  #baseDelayMs;
  #maxDelayMs;
  #typingIntervalMs;
  #connectTimeoutMs;

  #state = "idle";
  #socket = null;
  #opens = 0; // sockets opened so far: every one after the first is a reconnect
  #attempts = 0; // failed attempts since the last connection_established
  #timer = null; // the next attempt while waiting; the attempt's time limit while connecting
  #ready = null; // connect()'s promise and its settlers
  #handlers = new Map(); // event type -> Set of handlers
  #conversations = new Map(); // joined (or joining) conversation id -> { lastSeq }
  #queue = new Set(); // requests not answered yet, in the order they were made
  #inFlight = new Map(); // request_id on the current socket -> request
  #nextRequestId = 0;
  #typingSentAt = new Map(); // conversation id -> when start_typing was last sent

  /** The user id the server confirmed in `connection_established`; null before. */
  userId = null;

  constructor({
    baseUrl = globalThis.location?.origin,
    tenantId,
    token,
    getToken,
    reconnect = {},
    typingIntervalMs = DEFAULT_TYPING_INTERVAL_MS,
    connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS,
    WebSocket = globalThis.WebSocket,
    fetch = globalThis.fetch,
  } = {}) {
    if (!baseUrl) throw new TypeError("ChatClient needs baseUrl, the server's http(s) origin");
    if (!tenantId) throw new TypeError("ChatClient needs tenantId");
    if (!token && !getToken) throw new TypeError("ChatClient needs a token or getToken");
    if (!WebSocket) throw new TypeError("No WebSocket here: pass one as the WebSocket option");
    this.#baseUrl = baseUrl.replace(/\/+$/, "");
    this.#tenantId = tenantId;
    this.#token = token;
    this.#getToken = getToken;
    this.#WebSocket = WebSocket;
    this.#fetch = fetch;
    this.#baseDelayMs = reconnect.baseDelayMs ?? DEFAULT_RECONNECT.baseDelayMs;
    this.#maxDelayMs = reconnect.maxDelayMs ?? DEFAULT_RECONNECT.maxDelayMs;
    this.#typingIntervalMs = typingIntervalMs;
    this.#connectTimeoutMs = connectTimeoutMs;
  }

  /** `idle`, `connecting`, `connected`, `waiting` (to reconnect) or `closed` (for good). */
  get state() {
    return this.#state;
  }

  /** Opens the socket; resolves with `connection_established`, rejects on a refused token or close(). */
  connect() {
    if (this.#state === "closed") return Promise.reject(new ChatError("closed", "This client is closed; make a new one"));
    if (!this.#ready) {
      let settle;
      const promise = new Promise((resolve, reject) => (settle = { resolve, reject }));
      this.#ready = { promise, ...settle };
      this.#open();
    }
    return this.#ready.promise;
  }

  /** Calls `handler(event)` for each event of `type` (any server event type, or `state`, `resync`, `auth_error`). */
  on(type, handler) {
    let handlers = this.#handlers.get(type);
    if (!handlers) this.#handlers.set(type, (handlers = new Set()));
    const entry = (event) => handler(event); // its own entry, so one handler may be added twice
    handlers.add(entry);
    return () => handlers.delete(entry);
  }

  /** Joins now and after every reconnect (with `since_seq`); resolves with `conversation_joined`. */
  join(conversationId, { sinceSeq } = {}) {
    if (!this.#conversations.has(conversationId)) this.#conversations.set(conversationId, { lastSeq: sinceSeq ?? null });
    return this.#join(conversationId);
  }

  /**
   * Stops following the conversation; resolves with `conversation_left`. A join still unanswered is
   * rejected. Offline there is nothing to tell the server: the next socket simply does not rejoin.
   */
  leave(conversationId) {
    this.#conversations.delete(conversationId);
    for (const request of this.#queue) {
      if (request.joins === conversationId) this.#settle(request, null, new ChatError("left", "Left before the join was answered"));
    }
    if (this.#state !== "connected") return Promise.resolve(leftEvent(conversationId));
    return this.#request({ type: "leave_conversation", conversation_id: conversationId }, { leaves: conversationId });
  }

  /** Resolves with the stored message once the server acknowledges it, across reconnects if need be. */
  async send(conversationId, content, { messageType, metadata, replyTo, clientMsgId = newClientMsgId() } = {}) {
    this.#typingSentAt.delete(conversationId); // a message ends the typing indicator on the server
    const frame = defined({
      type: "send_message",
      conversation_id: conversationId,
      content,
      message_type: messageType,
      metadata,
      reply_to: replyTo,
      client_msg_id: clientMsgId,
    });
    return (await this.#request(frame)).message;
  }

  /** Resolves with the edited message. */
  async edit(messageId, content) {
    return (await this.#request({ type: "edit_message", message_id: messageId, content })).message;
  }

  /** Resolves with `message_deleted`. */
  delete(messageId) {
    return this.#request({ type: "delete_message", message_id: messageId });
  }

  /** Resolves with the reaction. */
  async react(messageId, emoji) {
    return (await this.#request({ type: "add_reaction", message_id: messageId, emoji })).reaction;
  }

  /** Resolves with `reaction_removed`. */
  unreact(messageId, emoji) {
    return this.#request({ type: "remove_reaction", message_id: messageId, emoji });
  }

  /** Marks the conversation read up to `messageId` (default: its latest message); resolves with `read_receipt`. */
  markRead(conversationId, messageId) {
    return this.#request(defined({ type: "mark_read", conversation_id: conversationId, message_id: messageId }));
  }

  /** `online`, `away`, `busy` or `offline`; resolves with `presence_update`. */
  setPresence(status) {
    return this.#request({ type: "update_presence", status });
  }

  /** Call on every keystroke: sends `start_typing` at most once per `typingIntervalMs`. */
  startTyping(conversationId) {
    const last = this.#typingSentAt.get(conversationId);
    if (last !== undefined && Date.now() - last < this.#typingIntervalMs) return;
    if (this.#write({ type: "start_typing", conversation_id: conversationId })) this.#typingSentAt.set(conversationId, Date.now());
  }

  stopTyping(conversationId) {
    if (this.#typingSentAt.delete(conversationId)) this.#write({ type: "stop_typing", conversation_id: conversationId });
  }

  /**
   * A REST call with the token: `path` is relative to /api/notifications/chat/ (or absolute, from
   * `/`); `body` is sent as JSON, or as is when it is FormData. Resolves with the parsed JSON
   * answer (null for 204, a Blob when not JSON); rejects with a ChatError carrying `status`.
   * A 401 with `getToken` asks it for a fresh token and tries once more.
   */
  async api(method, path, body) {
    const url = this.#baseUrl + (path.startsWith("/") ? path : API_PREFIX + path);
    let response = await this.#http(method, url, body);
    if (response.status === 401 && this.#getToken) {
      this.#token = await this.#getToken();
      response = await this.#http(method, url, body);
    }
    if (response.status === 204) return null;
    if (!(response.headers.get("Content-Type") ?? "").includes("json")) {
      if (response.ok) return response.blob();
      throw new ChatError("http_error", `HTTP ${response.status}`, { status: response.status });
    }
    const answer = await response.json();
    if (!response.ok) {
      const { code = "http_error", message = `HTTP ${response.status}`, details } = answer?.error ?? {};
      throw new ChatError(code, message, { status: response.status, details });
    }
    return answer;
  }

  /** Closes the socket for good; whatever is still unanswered is rejected. */
  close() {
    if (this.#state === "closed") return;
    this.#shutDown(new ChatError("closed", "The client was closed"), { code: 1000, reason: "closed by the client" });
  }

  // --- the connection ----------------------------------------------------------------------

  async #open() {
    this.#timer = null;
    this.#setState("connecting", { attempt: this.#attempts });
    if (this.#getToken && (this.#opens > 0 || !this.#token)) {
      try {
        this.#token = await this.#getToken();
      } catch (error) {
        if (this.#state === "connecting") this.#reconnectLater({ reason: `getToken failed: ${error}` });
        return;
      }
      if (this.#state !== "connecting") return; // closed meanwhile
    }
    this.#opens += 1;
    const url = `${this.#baseUrl.replace(/^http/, "ws")}/ws/chat/${encodeURIComponent(this.#tenantId)}/?token=${encodeURIComponent(this.#token)}`;
    const socket = new this.#WebSocket(url);
    this.#socket = socket;
    socket.onmessage = (frame) => socket === this.#socket && this.#receive(frame.data);
    socket.onclose = (close) => socket === this.#socket && this.#closed(close.code, close.reason);
    this.#timer = setTimeout(() => {
      socket.close();
      this.#closed(undefined, `not connected within ${this.#connectTimeoutMs} ms`);
    }, this.#connectTimeoutMs);
  }

  #closed(code, reason) {
    clearTimeout(this.#timer);
    this.#socket = null;
    this.#typingSentAt.clear(); // the server clears a closed socket's typing
    if (AUTH_CLOSE_CODES.has(code)) {
      this.#shutDown(new ChatError("unauthorized", reason || "The server refused the token", { closeCode: code }), { code, reason });
      this.#emit("auth_error", { code, reason });
      return;
    }
    if (BACK_OFF_CLOSE_CODES.has(code)) this.#attempts = Math.max(this.#attempts, BACK_OFF_ATTEMPTS);
    this.#reconnectLater({ code, reason });
  }

  /** Exponential backoff, capped, with jitter (half to all of it) so a restart's clients spread out. */
  #reconnectLater(details) {
    const ceiling = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** this.#attempts);
    const delayMs = Math.round(ceiling * (0.5 + Math.random() / 2));
    this.#attempts += 1;
    this.#setState("waiting", { ...details, delayMs, attempt: this.#attempts });
    this.#timer = setTimeout(() => this.#open(), delayMs);
  }

  #shutDown(error, details) {
    clearTimeout(this.#timer);
    const socket = this.#socket;
    this.#socket = null;
    if (socket && socket.readyState <= 1) socket.close(1000);
    this.#setState("closed", details);
    this.#ready?.reject(error);
    for (const request of this.#queue) this.#settle(request, null, error);
  }

  #setState(state, details = {}) {
    const previous = this.#state;
    this.#state = state;
    this.#emit("state", { state, previous, ...details });
  }

  // --- events ------------------------------------------------------------------------------

  #receive(data) {
    const event = JSON.parse(data);
    if (event.type === "connection_established") {
      clearTimeout(this.#timer);
      const previous = this.#state;
      this.userId = event.user_id;
      this.#attempts = 0;
      this.#state = "connected";
      this.#resume(); // before anyone hears of it, so the rejoins go out ahead of their frames
      this.#emit("state", { state: "connected", previous });
      this.#ready.resolve(event);
    }
    const duplicate = this.#follow(event);
    const request = event.request_id != null ? this.#inFlight.get(event.request_id) : undefined;
    if (request) this.#answer(request, event);
    if (event.type === "resync_required") this.#emit("resync", event);
    if (!duplicate && !(request && event.type === "error")) this.#emit(event.type, event);
  }

  /** Keeps each joined conversation's position; true for an event already seen there. */
  #follow(event) {
    const conversation = this.#conversations.get(conversationOf(event));
    if (!conversation) return false;
    switch (event.type) {
      case "conversation_joined":
        conversation.lastSeq ??= event.last_seq;
        return false;
      case "resync_required": // too much missed to replay: live events continue after last_seq
        conversation.lastSeq = Math.max(conversation.lastSeq ?? 0, event.last_seq);
        return false;
      case "conversation_deleted":
        this.#conversations.delete(event.conversation_id);
        return false;
    }
    const position = streamPosition(event);
    if (position == null) return false;
    if (conversation.lastSeq != null && position <= conversation.lastSeq) return true;
    conversation.lastSeq = position;
    return false;
  }

  #emit(type, event) {
    for (const handler of [...(this.#handlers.get(type) ?? [])]) {
      try {
        handler(event);
      } catch (error) {
        setTimeout(() => {
          throw error; // reported like any uncaught error, without stopping the others
        });
      }
    }
  }

  // --- requests ----------------------------------------------------------------------------

  #join(conversationId) {
    const frame = () => {
      const since = this.#conversations.get(conversationId)?.lastSeq;
      return defined({ type: "join_conversation", conversation_id: conversationId, since_seq: since ?? undefined });
    };
    return this.#request(frame, { joins: conversationId }).catch((error) => {
      if (error.code !== "closed" && error.code !== "unauthorized") this.#conversations.delete(conversationId);
      throw error;
    });
  }

  /** `frame` is an object, or a function making it when sent (a join's since_seq is read then). */
  #request(frame, { joins, leaves } = {}) {
    return new Promise((resolve, reject) => {
      if (this.#state === "closed") {
        reject(new ChatError("closed", "The client was closed"));
        return;
      }
      const request = { frame, joins, leaves, resolve, reject, retries: 0, timer: null };
      this.#queue.add(request);
      this.#transmit(request);
    });
  }

  #transmit(request) {
    clearTimeout(request.timer);
    request.timer = null;
    if (this.#state !== "connected") return; // sent after the next connection_established
    request.requestId = `sdk-${++this.#nextRequestId}`;
    this.#inFlight.set(request.requestId, request);
    const frame = typeof request.frame === "function" ? request.frame() : request.frame;
    this.#write({ ...frame, request_id: request.requestId });
  }

  /** Done with a request: resolved with `event`, or rejected with `error`. */
  #settle(request, event, error) {
    clearTimeout(request.timer);
    this.#queue.delete(request);
    this.#inFlight.delete(request.requestId);
    if (error) request.reject(error);
    else request.resolve(event);
  }

  #answer(request, event) {
    this.#inFlight.delete(event.request_id);
    if (event.type !== "error") {
      this.#settle(request, event);
    } else if (event.code === RATE_LIMITED) {
      request.timer = setTimeout(() => this.#transmit(request), 1000 * (event.details?.retry_after ?? 1));
    } else if (event.code === STORAGE_UNAVAILABLE) {
      const delayMs = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** request.retries++);
      request.timer = setTimeout(() => this.#transmit(request), delayMs);
    } else if (event.code !== SHUTTING_DOWN) {
      this.#settle(request, null, new ChatError(event.code, event.message, { details: event.details }));
    }
  }

  /**
   * After connection_established: rejoin every conversation from its last position, then resend
   * the rest. A leave cut off by the reconnect is done: the new socket never joined.
   */
  #resume() {
    this.#inFlight.clear();
    for (const request of this.#queue) if (request.leaves) this.#settle(request, leftEvent(request.leaves));
    const queued = [...this.#queue];
    const joins = queued.filter((request) => request.joins);
    joins.forEach((request) => this.#transmit(request));
    const joining = new Set(joins.map((request) => request.joins));
    for (const conversationId of this.#conversations.keys()) {
      if (!joining.has(conversationId)) this.#rejoin(conversationId);
    }
    queued.filter((request) => !request.joins).forEach((request) => this.#transmit(request));
  }

  /** A join nobody awaits: a refusal (removed from the conversation meanwhile) is an `error` event. */
  #rejoin(conversationId) {
    this.#join(conversationId).catch((error) => {
      if (error.code !== "closed" && error.code !== "left") {
        this.#emit("error", { type: "error", code: error.code, message: error.message, conversation_id: conversationId });
      }
    });
  }

  #write(frame) {
    if (this.#state !== "connected" || this.#socket?.readyState !== 1) return false;
    this.#socket.send(JSON.stringify(frame));
    return true;
  }

  #http(method, url, body) {
    const headers = { Authorization: `Bearer ${this.#token}` };
    const form = typeof FormData !== "undefined" && body instanceof FormData;
    if (body !== undefined && !form) headers["Content-Type"] = "application/json";
    const fetch = this.#fetch; // called unbound: a browser's fetch refuses any other `this`
    return fetch(url, { method, headers, body: body === undefined || form ? body : JSON.stringify(body) });
  }
}
