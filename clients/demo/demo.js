// The demo app: the SDK and plain DOM, no framework. Every text from the server goes into the
// page as text (textContent), never as HTML. The token comes from the form or the URL's
// #tenant=..&token=.. (a fragment never reaches the server's logs).

import { ChatClient } from "/sdk/chat.js";

const $ = (id) => document.getElementById(id);
const REACTIONS = ["👍", "❤️", "😂"];
const LOGGED = [
  "connection_established", "conversation_joined", "conversation_left", "new_message", "message_updated",
  "message_deleted", "reaction_added", "reaction_removed", "typing_indicator", "read_receipt", "presence_update",
  "presence_batch", "conversation_updated", "conversation_deleted", "resync_required", "error",
];

let chat = null;
let open = null; // the conversation on screen: { id, messages: Map, reads: Map, typing: Set, people: Map }
let editing = null; // the id of the message the composer edits

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function button(text, onClick, title) {
  const node = element("button", text);
  node.type = "button";
  if (title) node.title = title;
  node.addEventListener("click", onClick);
  return node;
}

function problem(error) {
  $("problem").hidden = !error;
  $("problem").textContent = error ? `${error.code ?? "error"}: ${error.message}` : "";
}

/** Runs an action for a click or a form, showing what went wrong instead of throwing it away. */
function attempt(action) {
  return (...args) =>
    Promise.resolve()
      .then(() => action(...args))
      .then(() => problem(null), problem);
}

function claims(token) {
  try {
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return {};
  }
}

function log(event) {
  const entry = element("li", JSON.stringify(event));
  $("events").prepend(entry);
  while ($("events").children.length > 100) $("events").lastChild.remove();
}

// --- conversations ---------------------------------------------------------------------------

function label(conversation) {
  return conversation.title || `${conversation.type} ${conversation.id.slice(0, 8)}`;
}

async function loadConversations() {
  const page = await chat.api("GET", "conversations/?limit=100");
  const list = $("conversations");
  list.replaceChildren(
    ...page.results.map((conversation) => {
      const item = element("li");
      const link = button(label(conversation), attempt(() => openConversation(conversation.id)));
      if (open?.id === conversation.id) item.className = "current";
      item.append(link);
      if (conversation.unread_count && open?.id !== conversation.id) item.append(element("span", String(conversation.unread_count), "badge"));
      return item;
    }),
  );
}

async function createConversation(form) {
  const ids = form.participants.value.split(",").map((id) => id.trim()).filter(Boolean);
  const body = { type: form.type.value, participant_ids: ids };
  if (form.title.value.trim()) body.title = form.title.value.trim();
  const conversation = await chat.api("POST", "conversations/", body);
  form.reset();
  await openConversation(conversation.id);
}

async function openConversation(id) {
  if (open && open.id !== id) chat.leave(open.id).catch(problem);
  const [conversation, page] = await Promise.all([
    chat.api("GET", `conversations/${id}/`),
    chat.api("GET", `conversations/${id}/messages/?limit=50`),
  ]);
  open = { id, messages: new Map(), reads: new Map(), typing: new Set(), people: new Map() };
  page.results.forEach((message) => open.messages.set(message.id, message));
  for (const participant of conversation.participants) {
    open.reads.set(participant.user_id, participant.last_read_seq);
    open.people.set(participant.user_id, "offline");
  }
  $("title").textContent = label(conversation);
  $("composer").hidden = false;
  await chat.join(id, { sinceSeq: page.results.at(-1)?.seq ?? 0 });
  const presence = await chat.api("GET", `presence/?user_ids=${[...open.people.keys()].slice(0, 100).join(",")}`);
  presence.results.forEach(updatePresence);
  render();
  await Promise.all([markRead(), loadConversations()]);
}

async function markRead() {
  if (document.hidden) return;
  const last = [...open.messages.values()].at(-1);
  if (last && last.sender_id !== chat.userId && (open.reads.get(chat.userId) ?? 0) < last.seq) await chat.markRead(open.id);
}

// --- messages ----------------------------------------------------------------------------------

function render() {
  const readers = new Map(); // seq -> who read up to it
  for (const [user, seq] of open.reads) {
    if (user !== chat.userId && seq > 0) readers.set(seq, [...(readers.get(seq) ?? []), user]);
  }
  $("messages").replaceChildren(...[...open.messages.values()].map((message) => renderMessage(message, readers.get(message.seq))));
  $("messages").lastElementChild?.scrollIntoView({ block: "end" });
  const typists = [...open.typing];
  $("typing").textContent = typists.length ? `${typists.join(", ")} ${typists.length > 1 ? "are" : "is"} typing…` : "";
  $("people").replaceChildren(
    ...[...open.people].map(([user, status]) => element("li", `${user}${user === chat.userId ? " (you)" : ""}: ${status}`, `presence ${status}`)),
  );
}

function renderMessage(message, readBy) {
  const mine = message.sender_id === chat.userId;
  const item = element("li", undefined, `message${mine ? " mine" : ""}${message.message_type === "system" ? " system" : ""}`);
  item.dataset.id = message.id;
  item.append(element("span", message.sender_id, "sender"));
  item.append(element("span", message.is_deleted ? "(deleted)" : message.content, "content"));
  if (message.edited_at && !message.is_deleted) item.append(element("span", "(edited)", "note"));
  if (!message.is_deleted && message.message_type !== "system") {
    const actions = element("span", undefined, "actions");
    for (const emoji of REACTIONS) {
      const reaction = message.reactions.find((r) => r.emoji === emoji);
      const reacted = reaction?.user_ids.includes(chat.userId);
      const toggle = button(reaction ? `${emoji} ${reaction.count}` : emoji, attempt(() => (reacted ? chat.unreact(message.id, emoji) : chat.react(message.id, emoji))), reaction?.user_ids.join(", "));
      if (reacted) toggle.className = "reacted";
      actions.append(toggle);
    }
    if (mine) {
      actions.append(button("edit", () => startEditing(message)));
      actions.append(button("delete", attempt(() => chat.delete(message.id))));
    }
    item.append(actions);
  }
  if (readBy) item.append(element("span", `read by ${readBy.sort().join(", ")}`, "receipt"));
  return item;
}

function startEditing(message) {
  editing = message.id;
  const input = $("composer").content;
  input.value = message.content;
  input.focus();
  $("cancel-edit").hidden = false;
}

function stopEditing() {
  editing = null;
  $("composer").content.value = "";
  $("cancel-edit").hidden = true;
}

async function submit(form) {
  const content = form.content.value;
  if (editing) {
    await chat.edit(editing, content);
    stopEditing();
    return;
  }
  form.content.value = "";
  chat.stopTyping(open.id);
  await chat.send(open.id, content);
}

function remember(message) {
  if (open?.id !== message.conversation_id) return;
  open.messages.set(message.id, { ...open.messages.get(message.id), ...message });
  render();
}

function changeReaction(messageId, emoji, userId, added) {
  const message = open?.messages.get(messageId);
  if (!message) return;
  const others = message.reactions.filter((r) => r.emoji !== emoji);
  const before = message.reactions.find((r) => r.emoji === emoji)?.user_ids ?? [];
  const userIds = [...before.filter((id) => id !== userId), ...(added ? [userId] : [])];
  message.reactions = userIds.length ? [...others, { emoji, count: userIds.length, user_ids: userIds }] : others;
  render();
}

function updatePresence({ user_id, status }) {
  if (open?.people.has(user_id)) {
    open.people.set(user_id, status);
    render();
  }
}

// --- the connection ----------------------------------------------------------------------------

function listen() {
  LOGGED.forEach((type) => chat.on(type, log));
  chat.on("state", ({ state, delayMs }) => {
    $("connection").textContent = state === "waiting" ? `reconnecting in ${(delayMs / 1000).toFixed(1)} s` : state;
    $("connection").className = `state ${state}`;
  });
  chat.on("auth_error", ({ reason }) => {
    problem({ code: "unauthorized", message: `${reason}. Paste a fresh token.` });
    $("login").hidden = false;
  });
  chat.on("new_message", ({ message }) => {
    remember(message);
    if (open?.id === message.conversation_id) markRead().catch(problem);
    else loadConversations().catch(problem);
  });
  chat.on("message_updated", ({ message }) => remember(message));
  chat.on("message_deleted", ({ message_id, conversation_id }) => remember({ id: message_id, conversation_id, is_deleted: true, content: "" }));
  chat.on("reaction_added", ({ reaction }) => changeReaction(reaction.message_id, reaction.emoji, reaction.user_id, true));
  chat.on("reaction_removed", ({ message_id, emoji, user_id }) => changeReaction(message_id, emoji, user_id, false));
  chat.on("typing_indicator", ({ conversation_id, user_id, is_typing }) => {
    if (open?.id !== conversation_id) return;
    open.typing[is_typing ? "add" : "delete"](user_id);
    render();
  });
  chat.on("read_receipt", ({ conversation_id, user_id, last_read_seq }) => {
    if (open?.id !== conversation_id) return;
    open.reads.set(user_id, last_read_seq);
    render();
  });
  chat.on("presence_update", updatePresence);
  chat.on("presence_batch", ({ updates }) => updates.forEach(updatePresence));
  chat.on("conversation_updated", () => loadConversations().catch(problem));
  chat.on("conversation_deleted", ({ conversation_id }) => {
    if (open?.id === conversation_id) {
      open = null;
      $("messages").replaceChildren();
      $("composer").hidden = true;
      $("title").textContent = "That conversation was deleted";
    }
    loadConversations().catch(problem);
  });
  chat.on("resync", ({ conversation_id }) => {
    if (conversation_id && open?.id === conversation_id) openConversation(conversation_id).catch(problem);
  });
}

async function start(tenant, token) {
  chat?.close();
  chat = new ChatClient({ baseUrl: location.origin, tenantId: tenant, token });
  listen();
  await chat.connect();
  $("login").hidden = true;
  $("app").hidden = false;
  $("presence-label").hidden = false;
  $("me").textContent = `${chat.userId} @ ${tenant}`;
  await loadConversations();
}

function wire() {
  $("login").addEventListener("submit", attempt((event) => {
    event.preventDefault();
    const token = event.target.token.value.trim();
    const tenant = event.target.tenant.value.trim() || claims(token).tenant_id;
    history.replaceState(null, "", `#${new URLSearchParams({ tenant, token })}`);
    return start(tenant, token);
  }));
  $("create").addEventListener("submit", attempt((event) => {
    event.preventDefault();
    return createConversation(event.target);
  }));
  $("composer").addEventListener("submit", attempt((event) => {
    event.preventDefault();
    return submit(event.target);
  }));
  $("composer").content.addEventListener("input", (event) => {
    if (editing) return;
    if (event.target.value) chat.startTyping(open.id);
    else chat.stopTyping(open.id);
  });
  $("cancel-edit").addEventListener("click", stopEditing);
  $("refresh").addEventListener("click", attempt(loadConversations));
  $("presence").addEventListener("change", attempt((event) => chat.setPresence(event.target.value)));
  document.addEventListener("visibilitychange", () => open && !document.hidden && markRead().catch(problem));
}

wire();
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  const token = fragment.get("token");
  attempt(() => start(fragment.get("tenant") || claims(token).tenant_id, token))();
}
