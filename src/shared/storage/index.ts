export * from './uri.js';
export * from './object-store.js';
export * from './s3-store.js';
export * from './output-keys.js';
