export * from "./errors";
export * from "./messageId";
export * from "./schema";
export * from "./publisher";
