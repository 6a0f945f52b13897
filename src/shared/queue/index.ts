export * from './contract.js';
export * from './keys.js';
export * from './redis.js';
export * from './run-store.js';
export * from './heartbeat.js';
