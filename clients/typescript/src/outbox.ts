// What an outbox item becomes: the frame that sends it, the entry it will be once acked,
// and the message the app shows until then.

import type { ChatMessage } from "./conversation.js";
import type { Entry } from "./protocol.js";
import type { OutboxItem } from "./storage.js";
import type * as Wire from "./wire.js";

/** The frame that sends an outbox item (its clientMessageId is also its requestId). */
export function frameOf(item: OutboxItem): Wire.ClientFrame {
  const base = { requestId: item.clientMessageId.slice(0, 64), conversationId: item.conversationId, clientMessageId: item.clientMessageId };
  const a = item.action;
  switch (a.kind) {
    case "message":
      return { action: "send", ...base, content: a.content, ...(a.replyTo === undefined ? {} : { replyTo: a.replyTo }) };
    case "edit":
      return { action: "edit", ...base, targetSeq: a.targetSeq, content: a.content };
    case "delete":
      return { action: "delete", ...base, targetSeq: a.targetSeq };
    case "reaction":
      return { action: "react", ...base, targetSeq: a.targetSeq, emoji: a.emoji, removed: a.removed };
  }
}

/** What an acked item's entry holds beyond the ack (the sender's copy of it). */
export function entryOf(item: OutboxItem): Partial<Entry> {
  const a = item.action;
  switch (a.kind) {
    case "message":
      if (a.content.type === "text") {
        return { kind: "message", content: a.content, replyTo: a.replyTo ?? null, editedAt: null, deleted: false, reactions: [] };
      }
      // The server's attachment content carries the attachment's details: read it back.
      return { kind: "message", content: null, replyTo: a.replyTo ?? null, reactions: [] };
    case "edit":
      return { kind: "edit", targetSeq: a.targetSeq, content: a.content };
    case "delete":
      return { kind: "delete", targetSeq: a.targetSeq };
    case "reaction":
      return { kind: "reaction", targetSeq: a.targetSeq, emoji: a.emoji, removed: a.removed };
  }
}

/** How an item not acked yet shows: the message as sent, with its tick. */
export function optimisticMessage(item: OutboxItem, senderId: string): ChatMessage {
  const action = item.action;
  return {
    conversationId: item.conversationId,
    seq: null,
    messageId: null,
    clientMessageId: item.clientMessageId,
    senderId,
    kind: "message",
    content: action.kind === "message" ? (action.content as ChatMessage["content"]) : null,
    replyTo: action.kind === "message" ? (action.replyTo ?? null) : null,
    timestamp: item.createdAt,
    editedAt: null,
    deleted: false,
    deletedBy: null,
    reactions: [],
    entry: null,
    status: item.state,
    ...(item.error ? { error: item.error } : {}),
  };
}
