import type * as Wire from "./wire.js";

// The wire format of the chat protocol, version 1.1 (docs/protocol.md), as the SDK reads
// it. Where the SDK reads an object as the documents define it, the type is the
// generated one (src/wire.ts); the others are open to more, as clients ignore fields and
// frame types they do not know, and are checked against the documents below.

/** Unix milliseconds, assigned by the server. */
export type Millis = number;

/** The codes of docs/protocol.md section 7. */
export type ErrorCode = Wire.ErrorCode;

/** Errors worth retrying with the same clientMessageId (section 7 of the protocol). */
export const RETRYABLE: ReadonlySet<string> = new Set(["RATE_LIMITED", "INTERNAL", "UNAVAILABLE"]);

export type TextContent = Wire.TextContent;

export type AttachmentInfo = Wire.AttachmentInfo;

/** An attachment message's content as the server stores and sends it. */
export interface AttachmentContent {
  type: "attachment";
  attachment: AttachmentInfo;
  text?: string | null;
  width?: number | null;
  height?: number | null;
  durationMs?: number | null;
  preview?: string | null;
  thumbnailId?: string | null;
}

/** What a client sends for an attachment message (section 8.3 step 3). */
export interface AttachmentSend {
  type: "attachment";
  attachmentId: string;
  text?: string;
  width?: number;
  height?: number;
  durationMs?: number;
  preview?: string;
  thumbnailId?: string;
}

/** A content type this client does not know: shown as "unsupported message". */
export interface UnknownContent {
  type: string;
  [field: string]: unknown;
}

export type Content = TextContent | AttachmentContent | UnknownContent;

export type EntryKind = "message" | "edit" | "delete" | "reaction" | "system";

export type ReactionSummary = Wire.ReactionSummary;

/** One seq of a conversation's log: `message.new` without `type`, history and sync items. */
export interface Entry {
  conversationId: string;
  messageId: string;
  seq: number;
  senderId: string | null;
  clientMessageId: string | null;
  /** Absent means `message`. */
  kind?: EntryKind | string;
  content?: Content | null;
  replyTo?: number | null;
  timestamp: Millis;
  editedAt?: Millis | null;
  deleted?: boolean;
  deletedBy?: string | null;
  reactions?: ReactionSummary[];
  targetSeq?: number;
  emoji?: string;
  removed?: boolean;
  event?: string;
  userIds?: string[];
  actorId?: string | null;
  role?: string;
  name?: string | null;
  avatar?: string | null;
}

export type Member = Wire.Member;

export interface Conversation {
  conversationId: string;
  type: "direct" | "group";
  name: string | null;
  createdAt: Millis;
  firstSeq: number;
  lastSeq: number;
  lastMessageAt: Millis;
  memberCount: number;
  members?: Member[];
  lastMessage?: Entry | null;
  avatar?: string | null;
  muted: boolean;
  mutedUntil?: Millis | null;
  unreadCount: number;
}

export interface Ack {
  type: "message.ack";
  requestId?: string | null;
  conversationId: string;
  clientMessageId: string;
  messageId: string;
  seq: number;
  timestamp: Millis;
  duplicate: boolean;
  kind?: string;
}

export interface ErrorFrame {
  type: "error";
  requestId?: string | null;
  clientMessageId?: string | null;
  code: ErrorCode | string;
  message: string;
  retryAfterMs?: number | null;
}

export type ReceiptFrame = Wire.ReceiptFrame;

export type TypingFrame = Wire.TypingFrame;

export type PresenceFrame = Wire.PresenceFrame;

export type ServerFrame =
  | Ack
  | ErrorFrame
  | ReceiptFrame
  | TypingFrame
  | PresenceFrame
  | ({ type: "message.new" } & Entry)
  | { type: "conversation.new" | "conversation.updated"; conversation: Conversation }
  | { type: "conversation.removed"; conversationId: string }
  | { type: "heartbeat.ack"; requestId?: string | null; serverTime: Millis; heartbeatIntervalMs: number }
  | { type: "ok"; requestId: string };

export type SyncRequest = Wire.SyncRequest;

export interface SyncedConversation {
  conversationId: string;
  messages: Entry[];
  hasMore: boolean;
  firstSeq: number;
  lastSeq: number;
  deliveredUpTo: number;
  readUpTo: number;
  unreadCount: number;
}

export interface SyncResponse {
  conversations: SyncedConversation[];
  newConversations: Conversation[];
  removedConversationIds: string[];
  serverTime: Millis;
}

export interface UploadTicket {
  attachmentId: string;
  upload: { url: string; method: string; headers: Record<string, string>; expiresAt: Millis };
}

// ------------------------------------------------------------------ checked against the documents
//
// src/wire.ts is generated from docs/asyncapi.yaml and docs/openapi.yaml. What the SDK
// sends is built from it (`Wire.ClientFrame`, `Wire.SyncRequest`...). The types above,
// which the SDK reads with, are checked here: everything the documents allow must fit
// them, and every field they name must be one the documents have. A change to the
// documents that the SDK does not follow fails `tsc`, which `npm run build` runs.

/** Every key of every member of a union. */
type KeysOf<T> = T extends unknown ? keyof T : never;
/** The keys a type names, without an index signature's `string` (as `UnknownContent`'s). */
type NamedKeys<T> = T extends unknown
  ? keyof { [K in keyof T as string extends K ? never : number extends K ? never : K]: T[K] }
  : never;
/** `true` when `Sdk` reads every value of `W` and names only fields `W` has (for a
 * union, any of its members' fields). */
type Reads<Sdk, W> = [W] extends [Sdk]
  ? [Exclude<NamedKeys<Sdk>, KeysOf<W>>] extends [never]
    ? true
    : { fieldsNotInTheDocuments: Exclude<NamedKeys<Sdk>, KeysOf<W>> }
  : { documentedValuesTheSdkCannotRead: W };
type Holds<T extends true> = T;

export type ReadsTheDocuments = [
  Holds<Reads<AttachmentContent, Wire.AttachmentContent>>,
  Holds<Reads<Content, Wire.Content>>,
  Holds<Reads<Entry, Wire.Entry>>,
  Holds<Reads<Conversation, Wire.Conversation>>,
  Holds<Reads<Ack, Wire.MessageAckFrame>>,
  Holds<Reads<ErrorFrame, Wire.ErrorFrame>>,
  Holds<Reads<ServerFrame, Wire.ServerFrame>>,
  Holds<Reads<SyncedConversation, Wire.SyncedConversation>>,
  Holds<Reads<SyncResponse, Wire.SyncResult>>,
  Holds<Reads<UploadTicket, Wire.UploadTicket>>,
];
