// Who owns each open stream, checked again while the stream runs: a stream whose token is
// deleted or expired, whose user is deactivated, or whose permission is taken away ends
// within a second. An identity invalidation (NOTIFY greenlight_identity, which the identity
// cache already receives) re-checks that user's streams at once; a one-second timer re-checks
// every distinct credential (expiry sends no notification), so many streams of one token cost
// one check a second.
import type { Identity } from '../accounts/user.ts';
import type { Credential } from '../auth/authenticator.ts';
import {
  AuthenticationRequiredError,
  InactiveAccountError,
  InvalidAuthenticationTokenError,
  NotPermittedError,
} from '../platform/errors.ts';
import type { Logger } from '../platform/logger.ts';

export type Owner = Readonly<{
  credential: Credential;
  userId: number;
  // ends the stream, saying why
  end: (reason: string) => void;
}>;

export type Reauthenticate = (credential: Credential) => Promise<Identity>;

const RECHECK_MS = 1000;

// Why an identity may not (or no longer) read the stream, or null when it may.
export function refusal(identity: Identity | null, permission: string): Error | null {
  if (identity === null) return new AuthenticationRequiredError();
  if (!identity.activated) return new InactiveAccountError();
  if (!identity.permissions.includes(permission)) return new NotPermittedError();
  return null;
}

export class StreamOwners {
  readonly #owners = new Set<Owner>();
  readonly #reauthenticate: Reauthenticate;
  readonly #permission: string;
  readonly #logger: Logger;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: { reauthenticate: Reauthenticate; permission: string; logger: Logger }) {
    this.#reauthenticate = options.reauthenticate;
    this.#permission = options.permission;
    this.#logger = options.logger;
  }

  get size(): number {
    return this.#owners.size;
  }

  add(owner: Owner): () => void {
    this.#owners.add(owner);
    if (!this.#timer) {
      this.#timer = setInterval(() => void this.#recheck(() => true), RECHECK_MS);
      this.#timer.unref();
    }
    return () => {
      this.#owners.delete(owner);
      if (this.#owners.size === 0) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
    };
  }

  // A user's tokens, activation or permissions changed (undefined: possibly anyone's).
  identityChanged(userId: number | undefined): void {
    void this.#recheck((owner) => userId === undefined || owner.userId === userId);
  }

  async #recheck(which: (owner: Owner) => boolean): Promise<void> {
    const byCredential = new Map<string, Owner[]>();
    for (const owner of this.#owners) {
      if (!which(owner)) continue;
      const key = `${owner.credential.from} ${owner.credential.value}`;
      byCredential.set(key, [...(byCredential.get(key) ?? []), owner]);
    }
    await Promise.all(
      [...byCredential.values()].map(async (owners) => {
        const reason = await this.#refusalFor((owners[0] as Owner).credential);
        if (reason) for (const owner of owners) owner.end(reason);
      }),
    );
  }

  async #refusalFor(credential: Credential): Promise<string | null> {
    try {
      return refusal(await this.#reauthenticate(credential), this.#permission)?.message ?? null;
    } catch (err) {
      if (err instanceof InvalidAuthenticationTokenError) return err.message;
      // The database is unreachable: the stream keeps its last answer until the next check.
      this.#logger.warn({ err }, 'could not re-check a stream owner');
      return null;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
