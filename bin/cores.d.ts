/** Types of bin/cores.js (plain JavaScript: bin/threadpool.js needs it before the TypeScript loader is registered). */
export declare function cgroupCpuLimit(read?: (path: string) => string): number | null;
export declare function coresWithin(parallelism: number, limit: number | null): number;
export declare function usableCores(): number;
