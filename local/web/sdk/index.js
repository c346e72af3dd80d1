export { ChatClient, ApiError } from "./client.js";
export { ConversationState } from "./conversation.js";
export { MemoryStorage, IndexedDbStorage } from "./storage.js";
export * from "./protocol.js";
