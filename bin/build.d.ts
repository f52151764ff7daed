// Types of bin/build.js's exports, for the TypeScript that imports them (the dashboard's tests).
export declare const INITIAL_JS_LIMIT_BYTES: number;
export declare function staleReason(): string | undefined;
export declare function webStaleReason(): string | undefined;
export declare function build(): Promise<number>;
export declare function buildWeb(): Promise<{ ms: number; initialJsGzipBytes: number }>;
export declare function initialJsGzipBytes(): number;
export declare function describeWebBuild(built: { ms: number; initialJsGzipBytes: number }): string;
export declare function ensureBuilt(): Promise<string>;
