/** Types of bin/threadpool.js (plain JavaScript: it runs before the TypeScript loader is registered). */
export declare function threadpoolSizeFor(cores: number): number;
export declare function sizeThreadpool(env?: NodeJS.ProcessEnv, cores?: number): void;
