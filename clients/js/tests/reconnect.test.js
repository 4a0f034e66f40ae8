// Losing the connection: the SDK reconnects with backoff, resumes each joined conversation from the
// last seq it saw, resends what was not answered, and delivers each event once; some closes end it.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ChatClient } from "../chat.js";
import { Proxy, RECONNECT, client, createGroup, history, record, recordingWebSocket, server, skip } from "./harness.js";

/** Alice through a proxy the test controls, Bob directly; both joined to a new group. */
async function behindProxy(t, aliceOptions = {}) {
  const proxy = await Proxy.start(t);
  const alice = client(t, "alice", { baseUrl: proxy.url, ...aliceOptions });
  const bob = client(t, "bob");
  await Promise.all([alice.connect(), bob.connect()]);
  const { id } = await createGroup(bob, ["alice"]);
  await Promise.all([alice.join(id), bob.join(id)]);
  return { proxy, alice, bob, id };
}

const contents = (events) => events.filter((e) => e.type === "new_message").map((e) => e.message.content);

test("after a drop: what was sent meanwhile arrives once, in order, and a send made while away is stored once", { skip }, async (t) => {
  const wire = recordingWebSocket();
  let tokensAsked = 0;
  const { proxy, alice, bob, id } = await behindProxy(t, {
    WebSocket: wire.WebSocket,
    getToken: () => (tokensAsked++, server.tokens.alice),
  });
  const seen = record(alice, "new_message", "state");
  const before = await bob.send(id, "before");
  await seen.until((e) => e.message?.content === "before");

  proxy.down();
  await seen.until((e) => e.state === "waiting", "the drop noticed");
  const whileAway = alice.send(id, "while away");
  for (const n of [1, 2, 3]) await bob.send(id, `meanwhile ${n}`);
  proxy.up();
  const stored = await whileAway;
  await bob.send(id, "after");
  await seen.until((e) => e.message?.content === "after");

  assert.deepEqual(contents(seen), ["before", "meanwhile 1", "meanwhile 2", "meanwhile 3", "while away", "after"]);
  assert.deepEqual(
    seen.filter((e) => e.type === "new_message").map((e) => e.message.seq),
    [0, 1, 2, 3, 4, 5].map((n) => before.seq + n),
  );
  assert.equal(stored.seq, before.seq + 4);
  assert.deepEqual(
    (await history(bob, id)).map((m) => m.content),
    ["before", "meanwhile 1", "meanwhile 2", "meanwhile 3", "while away", "after"],
  );
  const joins = wire.sent.filter((f) => f.type === "join_conversation");
  assert.deepEqual(joins.at(-1), { type: "join_conversation", conversation_id: id, since_seq: before.seq, request_id: joins.at(-1).request_id });
  assert.ok(tokensAsked >= 1, "getToken is asked before each reconnect");
});

test("a send whose answer was lost is sent again with its client_msg_id: stored and delivered once", { skip }, async (t) => {
  const { proxy, alice, bob, id } = await behindProxy(t);
  const seen = record(alice, "new_message");
  const atBob = record(bob, "new_message");
  proxy.mute(); // the server gets Alice's frame, Alice never hears the answer
  const sent = alice.send(id, "answer lost");
  const { message } = await atBob.until((e) => e.message.content === "answer lost", "the message stored");
  proxy.down();
  proxy.up();
  assert.equal((await sent).id, message.id, "the resend is answered with the stored original");
  await bob.send(id, "barrier");
  await seen.until((e) => e.message.content === "barrier");
  assert.deepEqual(contents(seen), ["answer lost", "barrier"]);
  assert.deepEqual(
    (await history(bob, id)).map((m) => m.content),
    ["answer lost", "barrier"],
  );
});

test("leaving while offline resolves at once, and the next socket does not rejoin", { skip }, async (t) => {
  const wire = recordingWebSocket();
  const { proxy, alice, id } = await behindProxy(t, { WebSocket: wire.WebSocket });
  const states = record(alice, "state");
  proxy.down();
  await states.until((e) => e.state === "waiting", "the drop noticed");
  assert.deepEqual(await alice.leave(id), { type: "conversation_left", conversation_id: id });
  const sentBefore = wire.sent.length;
  proxy.up();
  await states.until((e) => e.state === "connected");
  assert.deepEqual(wire.sent.slice(sentBefore), [], "the rejoins go out before `connected` is emitted: none");
});

test("reconnect attempts back off exponentially with jitter, capped", { skip }, async (t) => {
  const { proxy, alice } = await behindProxy(t);
  const states = record(alice, "state");
  proxy.down();
  await states.until((e) => e.state === "waiting" && e.attempt === 6, "six attempts");
  const waits = states.filter((e) => e.state === "waiting");
  for (const { attempt, delayMs } of waits) {
    const ceiling = Math.min(RECONNECT.maxDelayMs, RECONNECT.baseDelayMs * 2 ** (attempt - 1));
    assert.ok(delayMs >= ceiling / 2 && delayMs <= ceiling, `attempt ${attempt}: waited ${delayMs} ms, ceiling ${ceiling}`);
  }
  proxy.up();
  await states.until((e) => e.state === "connected");
});

test("past REPLAY_LIMIT the resume is a resync: the SDK says so and carries on from last_seq", { skip }, async (t) => {
  const { proxy, alice, bob, id } = await behindProxy(t);
  const seen = record(alice, "new_message", "resync", "state");
  proxy.down();
  await seen.until((e) => e.state === "waiting");
  let missed;
  for (let n = 1; n <= 25; n++) missed = await bob.send(id, `missed ${n}`); // the server under test replays at most 20
  proxy.up();
  const resync = await seen.until((e) => e.type === "resync_required", "resync");
  assert.deepEqual([resync.conversation_id, resync.last_seq], [id, missed.seq]);
  await bob.send(id, "live");
  await seen.until((e) => e.message?.content === "live");
  assert.deepEqual(contents(seen), ["live"]);
  assert.equal(seen.find((e) => e.type === "new_message").message.seq, missed.seq + 1);
});

test("a refused token ends the client: auth_error, connect() rejects, no more attempts", { skip }, async (t) => {
  const chat = new ChatClient({ baseUrl: server.url, tenantId: server.tenant, token: "not-a-token", reconnect: RECONNECT });
  t.after(() => chat.close());
  const events = record(chat, "state", "auth_error");
  await assert.rejects(chat.connect(), { name: "ChatError", code: "unauthorized", closeCode: 4401 });
  assert.equal(chat.state, "closed");
  await assert.rejects(chat.send("c", "x"), { code: "closed" });
  assert.deepEqual(
    events.map((e) => e.state ?? e.code),
    ["connecting", "closed", 4401],
  );
});

test("a token refused on reconnect stops reconnecting and rejects what was waiting", { skip }, async (t) => {
  const { proxy, alice, id } = await behindProxy(t, { getToken: () => "revoked" });
  const events = record(alice, "state", "auth_error");
  proxy.down();
  await events.until((e) => e.state === "waiting");
  const pending = alice.send(id, "never sent");
  proxy.up();
  await assert.rejects(pending, { code: "unauthorized" });
  const refusal = await events.until((e) => e.type === "auth_error");
  assert.equal(refusal.code, 4401);
  assert.equal(alice.state, "closed");
  const closed = events.findIndex((e) => e.state === "closed");
  assert.deepEqual(events.slice(closed + 1), [refusal], "nothing after the refusal");
});

test("closed for too many connections (4429): the next attempt waits longer", { skip }, async (t) => {
  const limit = Number(process.env.CHAT_SDK_TEST_MAX_CONNECTIONS);
  const held = Array.from({ length: limit }, () => client(t, "carol"));
  await Promise.all(held.map((chat) => chat.connect()));
  const extra = client(t, "carol");
  const states = record(extra, "state");
  await extra.connect(); // the server greets, then closes it with 4429
  const wait = await states.until((e) => e.state === "waiting", "the 4429 close");
  assert.equal(wait.code, 4429);
  assert.ok(wait.delayMs >= Math.min(RECONNECT.maxDelayMs, RECONNECT.baseDelayMs * 16) / 2, `waited ${wait.delayMs} ms`);
  held[0].close();
  await states.until((e) => e.state === "connected" && states.indexOf(e) > states.indexOf(wait), "connected once a place was free");
});
