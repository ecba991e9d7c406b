/** What app, user and gateway names may be: plain patterns, so the CLI checks a name without loading the schema. */
export const APP_NAME = /^[A-Za-z0-9_-]{1,32}$/;
export const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;
/** A gateway's name in a cluster; it is part of every message the gateway signs. */
export const GATEWAY_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
