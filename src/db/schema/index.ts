export * from './environments.ts';
export * from './events.ts';
export * from './files.ts';
export * from './gateway.ts';
export * from './identity.ts';
export * from './rate-limits.ts';
export * from './sandboxes.ts';
export * from './secrets.ts';
