// The keys JWTs are signed and verified with. HS256: one shared secret. EdDSA: Ed25519 key
// pairs in a directory (one 0600 JSON file per key id), the newest signing, older ones
// verifying until every token they signed has expired (superseded + JWT lifetime + skew),
// public halves served as a JWKS. `greenlight jwt rotate` adds a key and drops expired
// ones; running instances read the directory again for an unknown kid (at most once a
// second) and pick up a new signing key within a minute.
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import { linkSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidAuthenticationTokenError } from '../platform/errors.ts';

export const JWT_ALGORITHMS = ['HS256', 'EdDSA'] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

export type SigningKey = Readonly<{ key: KeyObject | Uint8Array; kid?: string }>;

export type JwtKeys = Readonly<{
  algorithm: JwtAlgorithm;
  signing: () => SigningKey;
  // The key for a token's header; refuses an unknown kid.
  verifying: (header: { kid?: string }) => KeyObject | Uint8Array;
  jwks?: () => { keys: Record<string, unknown>[] };
}>;

export const CLOCK_TOLERANCE_S = 30;

export function secretKeys(secret: string): JwtKeys {
  const key = new TextEncoder().encode(secret);
  return { algorithm: 'HS256', signing: () => ({ key }), verifying: () => key };
}

type StoredKey = Readonly<{ kid: string; createdAt: Date; privateKey: KeyObject; publicKey: KeyObject }>;

const RELOAD_UNKNOWN_KID_MS = 1000;
const RELOAD_SIGNING_MS = 60_000;

function readKeys(dir: string): StoredKey[] {
  return readdirSync(dir)
    .filter((file) => file.endsWith('.json'))
    .map((file) => {
      const stored = JSON.parse(readFileSync(join(dir, file), 'utf8')) as {
        kid: string;
        created_at: string;
        private_key: string;
      };
      const privateKey = createPrivateKey(stored.private_key);
      return {
        kid: stored.kid,
        createdAt: new Date(stored.created_at),
        privateKey,
        publicKey: createPublicKey(privateKey),
      };
    })
    .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
}

// Keys still able to verify: the newest, and older ones whose successor is younger than the
// longest a token they signed can live.
function liveKeys(keys: readonly StoredKey[], ttlMs: number): StoredKey[] {
  const now = Date.now();
  return keys.filter((_key, i) => {
    const successor = keys[i + 1];
    return !successor || successor.createdAt.getTime() + ttlMs + CLOCK_TOLERANCE_S * 1000 > now;
  });
}

// A file other processes may be reading at that moment (the workers of a cluster, two
// instances on one data directory) appears whole or not at all: it is written under a
// temporary name, then linked to its own, which fails if that exists already. Created
// in place, a rival could find it empty, between its creation and its write. Nothing
// happens when the name is taken.
function createWhole(path: string, content: string): void {
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(temporary, content, { mode: 0o600, flag: 'wx' });
  try {
    linkSync(temporary, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    rmSync(temporary);
  }
}

function addKey(dir: string): string {
  const kid = randomBytes(9).toString('base64url');
  const { privateKey } = generateKeyPairSync('ed25519');
  const stored = {
    kid,
    created_at: new Date().toISOString(),
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
  };
  createWhole(join(dir, `${kid}.json`), JSON.stringify(stored));
  return kid;
}

function openDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

// A new signing key; keys that can no longer verify anything are deleted.
export function rotateKeys(dir: string, ttlMs: number): { kid: string; removed: string[] } {
  openDir(dir);
  const kid = addKey(dir);
  const keys = readKeys(dir);
  const live = new Set(liveKeys(keys, ttlMs).map((k) => k.kid));
  const removed = keys.filter((k) => !live.has(k.kid)).map((k) => k.kid);
  for (const old of removed) rmSync(join(dir, `${old}.json`));
  return { kid, removed };
}

// The directory with at least one key. `serve` calls it before starting workers, so a
// cluster starts with one key rather than one per worker.
export function ensureKeyDir(dir: string): void {
  openDir(dir);
  if (readKeys(dir).length === 0) addKey(dir);
}

export function ed25519Keys(dir: string, ttlMs: number): JwtKeys {
  ensureKeyDir(dir);
  let keys = readKeys(dir);
  let loadedAt = Date.now();
  const reload = () => {
    keys = readKeys(dir);
    loadedAt = Date.now();
  };
  const live = () => liveKeys(keys, ttlMs);
  return {
    algorithm: 'EdDSA',
    signing: () => {
      if (Date.now() - loadedAt > RELOAD_SIGNING_MS) reload();
      const newest = keys[keys.length - 1] as StoredKey;
      return { key: newest.privateKey, kid: newest.kid };
    },
    verifying: (header) => {
      let key = live().find((k) => k.kid === header.kid);
      if (!key && header.kid !== undefined && Date.now() - loadedAt > RELOAD_UNKNOWN_KID_MS) {
        reload();
        key = live().find((k) => k.kid === header.kid);
      }
      if (!key) throw new InvalidAuthenticationTokenError();
      return key.publicKey;
    },
    jwks: () => ({
      keys: live().map((k) => ({
        ...k.publicKey.export({ format: 'jwk' }),
        kid: k.kid,
        alg: 'EdDSA',
        use: 'sig',
      })),
    }),
  };
}

// Development and staging without -jwt-secret: a secret generated once and kept in the data
// directory (0600), so tokens survive a restart and every worker of a cluster agrees.
export function jwtSecretFromDataDir(dataDir: string): string {
  const path = join(dataDir, 'jwt-secret');
  mkdirSync(dataDir, { recursive: true });
  createWhole(path, randomBytes(32).toString('base64url'));
  return readFileSync(path, 'utf8').trim();
}
