/**
 * The service's wire format, written once: REST bodies and WebSocket frames as TypeScript types.
 * JSON keys are camelCase; times are UTC seconds.
 */
export {};
