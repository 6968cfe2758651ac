// Who owns each open stream, checked again while the stream runs: a stream whose token is
// deleted or expired, whose user is deactivated, or whose permission is taken away ends
// within a second. An identity invalidation (NOTIFY greenlight_identity, which the identity
// cache already receives) re-checks that user's streams at once; a timer re-checks every
// distinct credential twice a second (expiry sends no notification), so many streams of one
// token cost two checks a second, and an expiry is seen within half a second plus the check.
import type { Identity } from '../accounts/user.ts';
import type { Credential } from '../auth/authenticator.ts';
import { InvalidAuthenticationTokenError } from '../platform/errors.ts';
import type { Logger } from '../platform/logger.ts';

export type Owner = Readonly<{
  credential: Credential;
  userId: number;
  // why the identity may no longer read what the stream sends (its topics' permissions)
  refusal: (identity: Identity) => Error | null;
  // ends the stream, saying why
  end: (reason: string) => void;
}>;

export type Reauthenticate = (credential: Credential) => Promise<Identity>;

// Half the promise: an expired credential's stream ends within a second even when the check
// that sees it is slow (a busy database, a busy process).
const RECHECK_MS = 500;

export class StreamOwners {
  readonly #owners = new Set<Owner>();
  readonly #reauthenticate: Reauthenticate;
  readonly #logger: Logger;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: { reauthenticate: Reauthenticate; logger: Logger }) {
    this.#reauthenticate = options.reauthenticate;
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
        const identity = await this.#identityOf((owners[0] as Owner).credential);
        for (const owner of owners) {
          const reason =
            typeof identity === 'string' ? identity : identity && owner.refusal(identity)?.message;
          if (reason) owner.end(reason);
        }
      }),
    );
  }

  // The identity, why the credential no longer authenticates, or null when that is unknown.
  async #identityOf(credential: Credential): Promise<Identity | string | null> {
    try {
      return await this.#reauthenticate(credential);
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
