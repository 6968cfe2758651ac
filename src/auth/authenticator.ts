// What every authenticator is: a small module that recognises its kind of credential and
// turns it into an Identity. src/auth/registry.ts lists them; configuration enables them.
import type { Identity } from '../accounts/user.ts';
import type { AuthMethod } from '../config.ts';

// A credential as the client sent it: the text after "Bearer " or the X-API-Key header.
export type Credential = Readonly<{ from: 'authorization' | 'x-api-key'; value: string }>;

export type Authenticator = Readonly<{
  method: AuthMethod;
  // Cheap, no I/O: is this credential of my kind? The first authenticator that says yes
  // decides; a credential nobody recognises is refused.
  recognises: (credential: Credential) => boolean;
  // The identity, or InvalidAuthenticationTokenError. `beforeLookup` is called before a
  // database query made for a credential that may be made up (it may throw 429).
  authenticate: (credential: Credential, beforeLookup: () => void | Promise<void>) => Promise<Identity>;
}>;
