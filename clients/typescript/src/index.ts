export { ChatClient } from "./client.js";
export { ApiError } from "./options.js";
export type { ChatClientOptions, ChatEvents, ConnectionStatus, Presence, SocketFactory, SocketLike } from "./options.js";
export { ConversationState } from "./conversation.js";
export type { ChatMessage, MessageStatus } from "./conversation.js";
export { MemoryStorage, IndexedDbStorage } from "./storage.js";
export type { OutboxAction, OutboxItem, OutboxStorage } from "./storage.js";
export * from "./protocol.js";
export type * as Wire from "./wire.js";
