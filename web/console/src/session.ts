import type { Api } from "./api";

// Session is a signed-in console: its API clients and what its token may do.
export interface Session {
  api: Api;
  // admin: the token may manage accounts and tokens.
  admin: boolean;
  // fail handles an API error: a refused token signs out, anything else
  // is shown in where.
  fail(err: unknown, where?: HTMLElement): void;
}
