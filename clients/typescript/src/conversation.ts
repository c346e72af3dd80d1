// One conversation as a client holds it: its entries in seq order with no gap, the
// messages they fold into (edits, deletes and reactions applied), and the members'
// positions that make ticks. Pure state, no I/O: the client feeds it entries from any
// source (live frames, acks, sync, history) in any order, as often as they come.

import type { Conversation, Entry, Member, ReactionSummary } from "./protocol.js";

/** The tick of an own message: `pending` (in the outbox), `sent` (acked: durable on the
 * server), `delivered` (every other member's device has it), `read`, or `failed`. */
export type MessageStatus = "pending" | "sent" | "delivered" | "read" | "failed";

/** A message (or system entry) as an app shows it, in its current state. */
export interface ChatMessage {
  conversationId: string;
  /** `null` while pending: the server has not placed it yet. */
  seq: number | null;
  messageId: string | null;
  clientMessageId: string | null;
  senderId: string | null;
  /** `message`, `system`, or a kind this client does not know (show a placeholder). */
  kind: string;
  content: Entry["content"];
  replyTo: number | null;
  timestamp: number;
  editedAt: number | null;
  deleted: boolean;
  deletedBy: string | null;
  reactions: ReactionSummary[];
  /** The entry itself, for what this view leaves out (a system entry's `event`...). */
  entry: Entry | null;
  /** Own messages only; others' messages are `sent`. */
  status: MessageStatus;
  error?: { code: string; message: string };
}

interface Held {
  message: ChatMessage;
  /** The highest seq whose effect the message's state already shows (a message read from
   * history or sync comes in its current state: older edits must not apply again). */
  stateSeq: number;
  /** Who reacted with what, as far as this client has seen. */
  reactors: Map<string, Set<string>>;
}

export class ConversationState {
  info: Conversation;
  /** Every seq up to this one is held (or expired, or before this client's window). */
  upTo: number;
  private readonly ahead = new Map<number, { entry: Entry; stateSeq: number }>();
  private readonly held = new Map<number, Held>();
  /** The seq before the first one this client keeps. */
  private readonly base: number;
  /** This user's own positions. */
  deliveredUpTo = 0;
  readUpTo = 0;

  constructor(
    info: Conversation,
    private readonly me: string,
    /** The seq below the first one this client keeps (it pages older ones by history). */
    base: number,
  ) {
    this.info = info;
    this.upTo = base;
    this.base = base;
    const mine = info.members?.find((m) => m.userId === me);
    if (mine) {
      this.deliveredUpTo = mine.deliveredUpTo;
      this.readUpTo = mine.readUpTo;
    }
  }

  get id(): string {
    return this.info.conversationId;
  }

  /** Takes an entry from anywhere; returns the entries that became contiguous, in order
   * (each seq exactly once over the life of this state). `stateSeq`: the highest seq
   * whose effect a message entry's state already shows (history and sync send messages
   * in their current state). */
  receive(entry: Entry, stateSeq = entry.seq): Entry[] {
    if (entry.seq <= this.upTo) {
      // Held already: a message in a newer state (history after an edit) still updates.
      const held = this.held.get(entry.seq);
      if (held && stateSeq > held.stateSeq && entryKind(entry) === "message") {
        this.replaceState(held, entry, stateSeq);
      }
      return [];
    }
    if (!this.ahead.has(entry.seq)) this.ahead.set(entry.seq, { entry, stateSeq });
    return this.drain();
  }

  /** Applies the entries that continue the held ones. */
  private drain(): Entry[] {
    const applied: Entry[] = [];
    for (;;) {
      const next = this.ahead.get(this.upTo + 1);
      if (!next) break;
      this.ahead.delete(this.upTo + 1);
      this.apply(next.entry, next.stateSeq);
      this.upTo += 1;
      applied.push(next.entry);
    }
    this.info.lastSeq = Math.max(this.info.lastSeq, this.upTo);
    return applied;
  }

  /** Seqs at or below `seq` are gone (expired) or out of this client's window: stop
   * waiting for them. Returns what became contiguous. */
  skipTo(seq: number): Entry[] {
    if (seq <= this.upTo) return [];
    for (const s of [...this.ahead.keys()]) if (s <= seq) this.ahead.delete(s);
    this.upTo = seq;
    return this.drain();
  }

  /** Whether entries past a gap are waiting. */
  get hasGap(): boolean {
    return this.ahead.size > 0;
  }

  /** Whether this seq is held. */
  holds(seq: number): boolean {
    return seq <= this.upTo && this.held.has(seq);
  }

  /** Messages and system entries in seq order. */
  messages(): ChatMessage[] {
    return [...this.held.entries()]
      .sort(([a], [b]) => a - b)
      .map(([, h]) => ({ ...h.message, status: this.statusOf(h.message) }));
  }

  /** Applies a member's positions (a receipt, a conversation object). Never backwards. */
  positions(userId: string, deliveredUpTo: number, readUpTo: number): void {
    if (userId === this.me) {
      this.deliveredUpTo = Math.max(this.deliveredUpTo, deliveredUpTo, readUpTo);
      this.readUpTo = Math.max(this.readUpTo, readUpTo);
    }
    const members = (this.info.members ??= []);
    const member = members.find((m) => m.userId === userId);
    if (member) {
      member.deliveredUpTo = Math.max(member.deliveredUpTo, deliveredUpTo, readUpTo);
      member.readUpTo = Math.max(member.readUpTo, readUpTo);
    }
  }

  /** Takes a newer conversation object, keeping positions that are already further. */
  update(info: Conversation): void {
    const before = new Map((this.info.members ?? []).map((m) => [m.userId, m] as const));
    const unread = info.unreadCount;
    this.info = { ...info, lastSeq: Math.max(info.lastSeq, this.upTo) };
    for (const m of info.members ?? []) {
      const old = before.get(m.userId);
      if (old) this.positions(m.userId, old.deliveredUpTo, old.readUpTo);
      if (m.userId === this.me) this.positions(m.userId, m.deliveredUpTo, m.readUpTo);
    }
    this.settleUnread(unread, info.lastSeq);
  }

  /** Takes the server's unread count, unless this client can count exactly itself: it
   * holds every entry after its read position up to what the server had counted. (An
   * answer computed before an own send or read, or before a message that came live
   * since, would otherwise put a stale count back.) */
  settleUnread(serverCount: number, serverLastSeq: number): void {
    if (this.readUpTo >= this.base && this.upTo >= serverLastSeq) this.recount();
    else this.info.unreadCount = serverCount;
  }

  /** The tick of an own message from the other members' positions. */
  private statusOf(message: ChatMessage): MessageStatus {
    if (message.senderId !== this.me || message.seq === null || message.kind !== "message") {
      return message.status;
    }
    const others: Member[] = (this.info.members ?? []).filter((m) => m.userId !== this.me);
    if (others.length === 0) return "sent";
    if (others.every((m) => m.readUpTo >= message.seq!)) return "read";
    if (others.every((m) => m.deliveredUpTo >= message.seq!)) return "delivered";
    return "sent";
  }

  /** Moves this user's read position; unread = `message` entries by others after it. */
  read(upTo: number): void {
    this.positions(this.me, upTo, upTo);
    this.recount();
  }

  private recount(): void {
    let count = 0;
    for (const [seq, held] of this.held) {
      if (seq > this.readUpTo && held.message.kind === "message" && held.message.senderId !== this.me) count += 1;
    }
    this.info.unreadCount = count;
  }

  private apply(entry: Entry, stateSeq: number): void {
    const kind = entryKind(entry);
    if (kind === "message" || kind === "system" || !FOLDED.has(kind)) {
      const message = toMessage(entry);
      const held: Held = { message, stateSeq, reactors: new Map() };
      for (const r of message.reactions) held.reactors.set(r.emoji, new Set(r.userIds));
      this.held.set(entry.seq, held);
      if (kind === "message") {
        this.info.lastMessage = entry;
        this.info.lastMessageAt = Math.max(this.info.lastMessageAt, entry.timestamp);
        // Sending moves the sender's own positions (section 3, "Send"), with no receipt:
        // an own message reads everything before it.
        if (entry.senderId) this.positions(entry.senderId, entry.seq, entry.seq);
        if (entry.senderId === this.me) this.info.unreadCount = 0;
        else if (entry.seq > this.readUpTo) this.info.unreadCount += 1;
      }
      return;
    }
    const target = entry.targetSeq === undefined ? undefined : this.held.get(entry.targetSeq);
    if (!target || entry.seq <= target.stateSeq) return;
    const m = target.message;
    switch (kind) {
      case "edit":
        if (!m.deleted && entry.content) {
          m.content = entry.content;
          m.editedAt = entry.timestamp;
        }
        break;
      case "delete":
        m.deleted = true;
        m.deletedBy = entry.deletedBy ?? entry.senderId;
        m.content = null;
        m.editedAt = null;
        m.reactions = [];
        target.reactors.clear();
        break;
      case "reaction":
        if (!m.deleted && entry.emoji && entry.senderId) this.react(target, entry.emoji, entry.senderId, !!entry.removed);
        break;
    }
    target.stateSeq = entry.seq;
  }

  /** Reactions are sets per (user, message, emoji). */
  private react(target: Held, emoji: string, userId: string, removed: boolean): void {
    const m = target.message;
    let summary = m.reactions.find((r) => r.emoji === emoji);
    const known = target.reactors.get(emoji) ?? new Set<string>();
    target.reactors.set(emoji, known);
    if (removed) {
      if (!known.has(userId) && !(userId === this.me && summary?.mine)) return;
      known.delete(userId);
      if (summary) {
        summary.count -= 1;
        summary.userIds = summary.userIds.filter((u) => u !== userId);
        if (userId === this.me) summary.mine = false;
        if (summary.count <= 0) m.reactions = m.reactions.filter((r) => r !== summary);
      }
      return;
    }
    if (known.has(userId) || (userId === this.me && summary?.mine)) return;
    known.add(userId);
    if (!summary) {
      summary = { emoji, count: 0, userIds: [], mine: false };
      m.reactions = [...m.reactions, summary];
    }
    summary.count += 1;
    if (summary.userIds.length < 3) summary.userIds = [...summary.userIds, userId];
    if (userId === this.me) summary.mine = true;
  }

  private replaceState(held: Held, entry: Entry, stateSeq: number): void {
    const status = held.message.status;
    held.message = { ...toMessage(entry), status };
    held.stateSeq = stateSeq;
    held.reactors = new Map(held.message.reactions.map((r) => [r.emoji, new Set(r.userIds)]));
  }
}

const FOLDED = new Set(["edit", "delete", "reaction"]);

export function entryKind(entry: Entry): string {
  return entry.kind ?? "message";
}

function toMessage(entry: Entry): ChatMessage {
  return {
    conversationId: entry.conversationId,
    seq: entry.seq,
    messageId: entry.messageId,
    clientMessageId: entry.clientMessageId,
    senderId: entry.senderId,
    kind: entryKind(entry),
    content: entry.content ?? null,
    replyTo: entry.replyTo ?? null,
    timestamp: entry.timestamp,
    editedAt: entry.editedAt ?? null,
    deleted: entry.deleted ?? false,
    deletedBy: entry.deletedBy ?? null,
    reactions: (entry.reactions ?? []).map((r) => ({ ...r, userIds: [...r.userIds] })),
    entry,
    status: "sent",
  };
}
