// Types of chat.js, the chat server's JavaScript SDK (docs/sdk.md). Event shapes are the server's
// (docs/wire-protocol.md); the fields listed are those most clients read, and every event may carry more.

export const API_PREFIX: "/api/notifications/chat/";

export type PresenceStatus = "online" | "away" | "busy" | "offline";
export type MessageType = "text" | "emoji" | "file" | "image" | "system";
export type ConnectionState = "idle" | "connecting" | "connected" | "waiting" | "closed";

export interface Reaction {
  id: string;
  message_id: string;
  conversation_id: string;
  user_id: string;
  emoji: string;
  created_at: string;
}

export interface Message {
  id: string;
  conversation_id: string;
  sender_id: string;
  content: string;
  message_type: MessageType;
  metadata: Record<string, unknown>;
  seq: number;
  created_at: string;
  edited_at: string | null;
  is_deleted: boolean;
  reply_to: string | null;
  client_msg_id: string | null;
  reactions: { emoji: string; count: number; user_ids: string[] }[];
}

/** Any event the server sends: `type`, the echoed `request_id` of an answer, and its own fields. */
export interface ServerEvent {
  type: string;
  request_id?: string | number;
  /** The event's position in its conversation's stream, on servers that number every stream event. */
  seq?: number;
  conversation_id?: string;
  [field: string]: any;
}

export interface ConnectionEstablished extends ServerEvent {
  type: "connection_established";
  user_id: string;
  tenant_id: string;
  message: string;
  timestamp: string;
}

export interface ConversationJoined extends ServerEvent {
  type: "conversation_joined";
  conversation_id: string;
  last_seq: number;
}

export interface ResyncRequired extends ServerEvent {
  type: "resync_required";
  reason: string;
  /** Too much missed to replay: load the history up to `last_seq` over REST; live events follow it. */
  conversation_id?: string;
  last_seq?: number;
  /** The socket fell behind and is closed (4408): the SDK resumes these by itself. */
  conversation_ids?: string[];
}

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** The close code and reason that ended the last socket (`waiting`, `closed`). */
  code?: number;
  reason?: string;
  /** `waiting`: how long until the next attempt, and which attempt that is. */
  delayMs?: number;
  attempt?: number;
}

export interface AuthError {
  /** 4401: the token was refused; 4403: it belongs to another tenant. */
  code: number;
  reason: string;
}

export interface SdkEvents {
  state: StateChange;
  resync: ResyncRequired;
  auth_error: AuthError;
  connection_established: ConnectionEstablished;
  conversation_joined: ConversationJoined;
  resync_required: ResyncRequired;
  new_message: ServerEvent & { message: Message };
  message_updated: ServerEvent & { message: Message };
  message_deleted: ServerEvent & { message_id: string; conversation_id: string };
  reaction_added: ServerEvent & { reaction: Reaction };
  reaction_removed: ServerEvent & { message_id: string; conversation_id: string; user_id: string; emoji: string };
  typing_indicator: ServerEvent & { conversation_id: string; user_id: string; is_typing: boolean };
  read_receipt: ServerEvent & { conversation_id: string; user_id: string; last_read_seq: number; last_read_message_id: string; read_at: string };
  presence_update: ServerEvent & { user_id: string; status: PresenceStatus; current_conversation_id?: string | null; last_seen?: string | null };
  error: ServerEvent & { code: string; message: string; details?: unknown };
}

export interface ChatClientOptions {
  /** The server's http(s) origin, e.g. "https://chat.example.com"; in a browser, the page's by default. */
  baseUrl?: string;
  tenantId: string;
  token?: string;
  /** Called before each reconnect (and before the first connect without `token`), and after a REST 401. */
  getToken?: () => string | Promise<string>;
  /** Backoff between attempts: `baseDelayMs × 2^attempt`, capped at `maxDelayMs`, jittered to half–all of it. */
  reconnect?: { baseDelayMs?: number; maxDelayMs?: number };
  /** How often `startTyping` may send `start_typing` to one conversation (default 3000). */
  typingIntervalMs?: number;
  /** A WebSocket class where there is no global one. */
  WebSocket?: typeof globalThis.WebSocket;
  fetch?: typeof globalThis.fetch;
}

export class ChatError extends Error {
  /** The server's error code (`not_found`, `forbidden`, ...), or the SDK's: `unauthorized`, `closed`, `left`, `http_error`. */
  code: string;
  details?: unknown;
  /** HTTP status, for `api()` errors. */
  status?: number;
  /** WebSocket close code, for `unauthorized`. */
  closeCode?: number;
}

export interface SendOptions {
  messageType?: Exclude<MessageType, "system">;
  metadata?: Record<string, unknown>;
  replyTo?: string;
  /** Kept across retries so the message is stored once; a fresh random id by default. */
  clientMsgId?: string;
}

export class ChatClient {
  constructor(options: ChatClientOptions);
  readonly state: ConnectionState;
  /** The user id the server confirmed in `connection_established`; null before. */
  userId: string | null;
  connect(): Promise<ConnectionEstablished>;
  on<K extends keyof SdkEvents>(type: K, handler: (event: SdkEvents[K]) => void): () => void;
  on(type: string, handler: (event: ServerEvent) => void): () => void;
  join(conversationId: string, options?: { sinceSeq?: number }): Promise<ConversationJoined>;
  leave(conversationId: string): Promise<ServerEvent>;
  send(conversationId: string, content: string, options?: SendOptions): Promise<Message>;
  edit(messageId: string, content: string): Promise<Message>;
  delete(messageId: string): Promise<SdkEvents["message_deleted"]>;
  react(messageId: string, emoji: string): Promise<Reaction>;
  unreact(messageId: string, emoji: string): Promise<SdkEvents["reaction_removed"]>;
  markRead(conversationId: string, messageId?: string): Promise<SdkEvents["read_receipt"]>;
  setPresence(status: PresenceStatus): Promise<SdkEvents["presence_update"]>;
  startTyping(conversationId: string): void;
  stopTyping(conversationId: string): void;
  api<T = any>(method: string, path: string, body?: unknown): Promise<T>;
  close(): void;
}
