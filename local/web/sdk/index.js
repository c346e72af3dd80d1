export { ChatClient } from "./client.js";
export { ApiError } from "./options.js";
export { ConversationState } from "./conversation.js";
export { MemoryStorage, IndexedDbStorage } from "./storage.js";
export * from "./protocol.js";
