// Poster use cases: upload (streamed into storage while its type, size and sha256 are
// checked), read, delete, and the removal of stored objects no poster refers to any more.
import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { PostersConfig } from '../config.ts';
import type { AfterMovieDeleted } from '../movies/movies.ts';
import type { Db } from '../platform/db.ts';
import {
  BadRequestError,
  PayloadTooLargeError,
  RangeNotSatisfiableError,
  UnsupportedMediaTypeError,
} from '../platform/errors.ts';
import type { Logger } from '../platform/logger.ts';
import {
  type ByteRange,
  type Conditionals,
  isNotModified,
  type Poster,
  requestedRange,
  SNIFF_BYTES,
  sniffPosterType,
  UNSUPPORTED_TYPE_MESSAGE,
} from './poster.ts';
import * as sql from './posters.sql.ts';
import { createPosterStorage, type PosterStorage } from './storage.ts';

export type Posters = Readonly<{ db: Db; storage: PosterStorage; logger: Logger; maxBytes: number }>;

export function createPosters(db: Db, config: PostersConfig, logger: Logger): Posters {
  return { db, storage: createPosterStorage(config), logger, maxBytes: config.maxBytes };
}

// An upload's object is deleted this long after it started unless it became a poster by then
// (the process died mid-upload): far longer than -read-timeout lets a body take.
const UPLOAD_GRACE_SECONDS = 3600;
const PURGE_BATCH = 100;

const tooLarge = (maxBytes: number) =>
  new PayloadTooLargeError(`body must not be larger than ${maxBytes} bytes`);
const movieKeys = (movieId: string) => `movies/${movieId}/`;

// `declaredLength`: the request's Content-Length, when it sent one. The movie must exist
// (the caller checks first; one deleted meanwhile is a NotFoundError here too).
export async function uploadPoster(
  posters: Posters,
  movieId: string,
  source: Readable,
  declaredLength: number | undefined,
): Promise<Poster> {
  const { db, storage, maxBytes } = posters;
  if (declaredLength !== undefined && declaredLength > maxBytes) throw tooLarge(maxBytes);
  // Reading may stop early (a refused body); the request stream must then stay open for the
  // response, and Node discards the rest of the body.
  const chunks = source.iterator({ destroyOnReturn: false }) as AsyncIterator<Buffer>;
  let head = Buffer.alloc(0);
  let ended = false;
  while (head.length < SNIFF_BYTES && !ended) {
    const next = await chunks.next();
    if (next.done) ended = true;
    else head = Buffer.concat([head, next.value]);
  }
  if (head.length === 0) throw new BadRequestError('body must not be empty');
  const contentType = sniffPosterType(head);
  if (contentType === null) throw new UnsupportedMediaTypeError(UNSUPPORTED_TYPE_MESSAGE);

  const hash = createHash('sha256');
  let size = 0;
  const counted = (chunk: Buffer) => {
    size += chunk.length;
    if (size > maxBytes) throw tooLarge(maxBytes);
    hash.update(chunk);
    return chunk;
  };
  async function* bytes(): AsyncGenerator<Buffer> {
    yield counted(head);
    for (let next = ended ? null : await chunks.next(); next && !next.done; next = await chunks.next()) {
      yield counted(next.value);
    }
  }

  const storageKey = `${movieKeys(movieId)}${randomUUID()}`;
  await sql.guardUpload(db, storageKey, UPLOAD_GRACE_SECONDS);
  let poster: Poster;
  try {
    await storage.put(storageKey, Readable.from(bytes()), contentType);
    poster = await sql.upsertPoster(db, { movieId, storageKey, contentType, size, etag: hash.digest('hex') });
  } catch (err) {
    await discard(posters, storageKey);
    throw err;
  }
  // The replaced poster's object, recorded by the table's trigger.
  await removeMoviePosterObjects(posters, movieId);
  return poster;
}

// A failed upload's object, if any; when that fails too, its guard row has it removed later.
async function discard(posters: Posters, storageKey: string): Promise<void> {
  try {
    await posters.storage.delete(storageKey);
    await sql.forgetDeletion(posters.db, storageKey);
  } catch (err) {
    posters.logger.warn({ err, storage_key: storageKey }, 'failed upload not removed yet');
  }
}

export type PosterRead =
  | Readonly<{ poster: Poster; notModified: true }>
  | Readonly<{ poster: Poster; notModified: false; range: ByteRange | null; body: Readable }>;

export async function readPoster(
  posters: Posters,
  movieId: string,
  headers: Conditionals,
): Promise<PosterRead> {
  for (let attempt = 1; ; attempt++) {
    const poster = await sql.selectPoster(posters.db, movieId);
    if (isNotModified(poster, headers)) return { poster, notModified: true };
    const range = requestedRange(poster, headers);
    if (range === 'unsatisfiable') throw new RangeNotSatisfiableError(poster.size);
    const body = await posters.storage.get(poster.storageKey, range);
    if (body) return { poster, notModified: false, range, body };
    // Replaced, and the old object removed, between reading the row and opening the object:
    // the new row names an object that exists.
    if (attempt === 2) throw new Error(`poster object ${poster.storageKey} is missing`);
  }
}

export async function deletePoster(posters: Posters, movieId: string): Promise<void> {
  await sql.deletePoster(posters.db, movieId);
  await removeMoviePosterObjects(posters, movieId);
}

// Deletes stored objects that no poster refers to any more, `prefix`'s only when given.
// Failures are recorded on the key and retried later with backoff; returns how many went.
export async function purgePosterObjects(posters: Posters, prefix: string | null = null): Promise<number> {
  const keys = await sql.claimDeletions(posters.db, PURGE_BATCH, prefix);
  let deleted = 0;
  for (const key of keys) {
    try {
      await posters.storage.delete(key);
      await sql.forgetDeletion(posters.db, key);
      deleted++;
    } catch (err) {
      posters.logger.warn({ err, storage_key: key }, 'poster object not deleted; retried later');
      await sql.recordDeletionFailure(posters.db, key, String(err)).catch(() => {});
    }
  }
  return deleted;
}

// A movie's deletion (movies.deleteMovie) removes its poster's stored objects at once.
export function afterMovieDeleted(posters: Posters): AfterMovieDeleted {
  return (movieId) => removeMoviePosterObjects(posters, movieId);
}

// The stored objects of a movie's deleted or replaced posters, removed now rather than at the
// next sweep. Never throws: the deletion that called it has happened, and what could not be
// removed stays recorded for the sweep.
export async function removeMoviePosterObjects(posters: Posters, movieId: string): Promise<void> {
  try {
    await purgePosterObjects(posters, movieKeys(movieId));
  } catch (err) {
    posters.logger.warn({ err, movie_id: movieId }, 'poster objects left for the sweep');
  }
}
