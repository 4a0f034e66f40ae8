// The SDK's calls against a real server: each one's frame, its answer and what the others see.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ChatClient, ChatError } from "../chat.js";
import { client, createGroup, history, record, recordingWebSocket, server, skip, userId } from "./harness.js";

async function pair(t, options = {}) {
  const ann = client(t, "ann", options);
  const ben = client(t, "ben");
  await Promise.all([ann.connect(), ben.connect()]);
  const conversation = await createGroup(ann, ["ben"]);
  await Promise.all([ann.join(conversation.id), ben.join(conversation.id)]);
  return { ann, ben, id: conversation.id };
}

test("connect resolves with connection_established and says so through state", { skip }, async (t) => {
  const ann = client(t, "ann");
  const states = record(ann, "state");
  const established = await ann.connect();
  assert.equal(established.type, "connection_established");
  assert.equal(established.user_id, userId("ann"));
  assert.equal(ann.userId, userId("ann"));
  assert.equal(ann.state, "connected");
  assert.deepEqual(
    states.map((s) => [s.state, s.previous]),
    [
      ["connecting", "idle"],
      ["connected", "connecting"],
    ],
  );
  assert.equal(ann.connect(), ann.connect(), "connect() again is the same promise");
});

test("two clients chat: send resolves with the stored message, the other receives it once", { skip }, async (t) => {
  const { ann, ben, id } = await pair(t);
  const received = record(ben, "new_message");
  const message = await ann.send(id, "hello ben");
  assert.equal(message.content, "hello ben");
  assert.equal(message.sender_id, userId("ann"));
  assert.match(message.client_msg_id, /^[0-9a-f]{32}$/);
  const { message: seen } = await received.until((e) => e.message.id === message.id, "ann's message");
  assert.deepEqual(seen, message);
  const reply = await ben.send(id, "hi ann", { clientMsgId: "ben-1", metadata: { mood: "fine" } });
  assert.deepEqual([reply.seq, reply.client_msg_id, reply.metadata], [message.seq + 1, "ben-1", { mood: "fine" }]);
  const again = await ben.send(id, "a retry with the same id", { clientMsgId: "ben-1" });
  assert.equal(again.id, reply.id, "the server answers a repeated client_msg_id with the original");
  assert.deepEqual(
    (await history(ann, id)).map((m) => m.content),
    ["hello ben", "hi ann"],
  );
});

test("on() hears any event type and its unsubscribe stops it", { skip }, async (t) => {
  const { ann, ben, id } = await pair(t);
  const kept = [];
  const dropped = [];
  ben.on("new_message", (e) => kept.push(e.message.content));
  const unsubscribe = ben.on("new_message", (e) => dropped.push(e.message.content));
  const pongs = record(ann, "pong", "conversation_left");
  const received = record(ben, "new_message");
  await ann.send(id, "one");
  await received.until((e) => e.message.content === "one");
  unsubscribe();
  await ann.send(id, "two");
  await received.until((e) => e.message.content === "two");
  assert.deepEqual(kept, ["one", "two"]);
  assert.deepEqual(dropped, ["one"]);
  const left = await ann.leave(id);
  assert.equal(left.type, "conversation_left");
  await pongs.until((e) => e.type === "conversation_left", "conversation_left, a type the SDK has no call of its own for");
});

test("edit, react, unreact, delete and markRead resolve with their answers; the other member sees each", { skip }, async (t) => {
  const { ann, ben, id } = await pair(t);
  const seen = record(ben, "message_updated", "reaction_added", "reaction_removed", "message_deleted", "read_receipt");
  const message = await ann.send(id, "first draft");
  const edited = await ann.edit(message.id, "second draft");
  assert.deepEqual([edited.id, edited.content], [message.id, "second draft"]);
  const reaction = await ben.react(message.id, "👍");
  assert.deepEqual([reaction.message_id, reaction.emoji, reaction.user_id], [message.id, "👍", userId("ben")]);
  const receipt = await ben.markRead(id);
  assert.deepEqual([receipt.type, receipt.last_read_message_id], ["read_receipt", message.id]);
  const removed = await ben.unreact(message.id, "👍");
  assert.equal(removed.type, "reaction_removed");
  const deleted = await ann.delete(message.id);
  assert.deepEqual([deleted.type, deleted.message_id], ["message_deleted", message.id]);
  await seen.until((e) => e.type === "message_deleted");
  assert.deepEqual(
    seen.map((e) => e.type),
    ["message_updated", "reaction_added", "read_receipt", "reaction_removed", "message_deleted"],
  );
});

test("a refused request rejects with the server's error and changes nothing", { skip }, async (t) => {
  const { ann, ben, id } = await pair(t);
  const errors = record(ben, "error");
  const message = await ann.send(id, "mine");
  await assert.rejects(ben.edit(message.id, "not yours"), (error) => error instanceof ChatError && error.code === "forbidden");
  await assert.rejects(ben.join("no-such-conversation"), { code: "not_found" });
  await assert.rejects(ben.send(id, ""), (error) => error.code === "invalid_message" && error.details !== undefined);
  assert.equal((await history(ann, id))[0].content, "mine");
  await ben.send(id, "barrier");
  assert.deepEqual(errors, [], "an error that answers a request rejects its promise, and is no error event besides");
});

test("startTyping sends start_typing at most once per interval; stopTyping ends it", { skip }, async (t) => {
  const wire = recordingWebSocket();
  const { ann, ben, id } = await pair(t, { WebSocket: wire.WebSocket, typingIntervalMs: 60000 });
  const typing = record(ben, "typing_indicator");
  ann.startTyping(id);
  ann.startTyping(id);
  ann.startTyping(id);
  await typing.until((e) => e.is_typing === true, "ann typing");
  ann.stopTyping(id);
  ann.stopTyping(id);
  await typing.until((e) => e.is_typing === false, "ann stopped typing");
  ann.startTyping(id);
  await ann.send(id, "sent"); // the message ends typing on the server; the next keystroke starts it again
  ann.startTyping(id);
  await typing.until((e) => e.is_typing === true && typing.filter((x) => x.is_typing).length === 2, "typing again");
  const typed = wire.sent.filter((f) => f.type.endsWith("_typing")).map((f) => f.type);
  assert.deepEqual(typed, ["start_typing", "stop_typing", "start_typing", "start_typing"]);
});

test("setPresence resolves with the user's presence_update", { skip }, async (t) => {
  const ann = client(t, "ann");
  await ann.connect();
  const answer = await ann.setPresence("away");
  assert.deepEqual([answer.type, answer.user_id, answer.status], ["presence_update", userId("ann"), "away"]);
  await assert.rejects(ann.setPresence("asleep"), { code: "invalid_message" });
  await ann.setPresence("online");
});

test("api() answers JSON, throws ChatError with the status, and asks getToken again after a 401", { skip }, async (t) => {
  const ann = client(t, "ann");
  const created = await ann.api("POST", "conversations/", { type: "group", title: "over REST" });
  assert.equal(created.title, "over REST");
  await assert.rejects(ann.api("GET", `conversations/${created.id}x/`), { name: "ChatError", status: 404, code: "not_found" });
  assert.equal(await ann.api("DELETE", `conversations/${created.id}/`), null, "204: no body");
  assert.equal((await ann.api("GET", "/healthz")).status, "ok");
  let asked = 0;
  const refreshed = new ChatClient({
    baseUrl: server.url,
    tenantId: server.tenant,
    token: "expired",
    getToken: () => (asked++, server.tokens.ann),
  });
  assert.ok(Array.isArray((await refreshed.api("GET", "conversations/")).results));
  assert.equal(asked, 1);
  const upload = new FormData();
  upload.append("file", new Blob(["notes\n"], { type: "text/plain" }), "notes.txt");
  const file = await ann.api("POST", "upload/", upload);
  assert.equal(file.filename, "notes.txt");
  assert.equal(await (await ann.api("GET", file.url)).text(), "notes\n", "a download is a Blob");
});

test("join({sinceSeq}) replays what came after it, then live events", { skip }, async (t) => {
  const { ann, id } = await pair(t);
  const [a, b, c] = [await ann.send(id, "a"), await ann.send(id, "b"), await ann.send(id, "c")];
  const ben = client(t, "ben");
  const received = record(ben, "new_message");
  await ben.connect();
  const joined = await ben.join(id, { sinceSeq: a.seq });
  assert.equal(joined.last_seq, c.seq);
  const d = await ann.send(id, "d");
  await received.until((e) => e.message.content === "d");
  assert.deepEqual(
    received.map((e) => e.message.id),
    [b.id, c.id, d.id],
  );
});

test("close() ends the client: unanswered requests reject, nothing reconnects", { skip }, async (t) => {
  const ann = client(t, "ann");
  const states = record(ann, "state");
  await ann.connect();
  ann.close();
  assert.equal(ann.state, "closed");
  await assert.rejects(ann.send("anything", "late"), { code: "closed" });
  await assert.rejects(ann.connect(), { code: "closed" });
  assert.deepEqual(
    states.map((s) => s.state),
    ["connecting", "connected", "closed"],
  );
});
