// movie_posters and poster_deletions. The table's trigger (migration 000018) records the
// storage key of every row deleted or replaced in poster_deletions.
import type { DatabaseError } from 'pg';
import type { Queryable } from '../platform/db.ts';
import { NotFoundError } from '../platform/errors.ts';
import type { Poster, PosterType } from './poster.ts';

const COLUMNS = 'movie_id, storage_key, content_type, size, etag, updated_at';

const SELECT_POSTER = `SELECT ${COLUMNS} FROM movie_posters WHERE movie_id = $1`;

// The upload's own guard in poster_deletions goes in the same statement that makes its
// object the movie's poster.
const UPSERT_POSTER = `
  WITH kept AS (DELETE FROM poster_deletions WHERE storage_key = $2)
  INSERT INTO movie_posters (movie_id, storage_key, content_type, size, etag, updated_at)
  VALUES ($1, $2, $3, $4, $5, now())
  ON CONFLICT (movie_id) DO UPDATE
     SET storage_key = EXCLUDED.storage_key, content_type = EXCLUDED.content_type,
         size = EXCLUDED.size, etag = EXCLUDED.etag, updated_at = EXCLUDED.updated_at
  RETURNING ${COLUMNS}`;

const DELETE_POSTER = 'DELETE FROM movie_posters WHERE movie_id = $1';

// An upload in progress is recorded as a deletion due after `$2` seconds: if the process
// dies before the object becomes a poster, the object is still removed one day.
const GUARD_UPLOAD = `
  INSERT INTO poster_deletions (storage_key, next_attempt_at)
  VALUES ($1, now() + make_interval(secs => $2))`;

// Claims due keys: each attempt pushes the next one back (16 s, 32 s, … up to an hour), which
// is also the lease that keeps other processes off a key while it is being deleted.
const CLAIM_DELETIONS = `
  UPDATE poster_deletions
     SET attempts = attempts + 1,
         next_attempt_at = now() + least(interval '1 hour', interval '1 second' * power(2, least(attempts + 4, 12)))
   WHERE storage_key IN (SELECT storage_key FROM poster_deletions
                          WHERE next_attempt_at <= now() AND ($2::text IS NULL OR storage_key LIKE $2)
                          ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
  RETURNING storage_key`;

const FORGET_DELETION = 'DELETE FROM poster_deletions WHERE storage_key = $1';

const RECORD_FAILURE = 'UPDATE poster_deletions SET last_error = $2 WHERE storage_key = $1';

const FOREIGN_KEY_VIOLATION = '23503';

type PosterRow = {
  movie_id: string;
  storage_key: string;
  content_type: PosterType;
  size: string;
  etag: string;
  updated_at: Date;
};

const toPoster = (row: PosterRow): Poster => ({
  movieId: row.movie_id,
  storageKey: row.storage_key,
  contentType: row.content_type,
  size: Number(row.size),
  etag: row.etag,
  updatedAt: row.updated_at,
});

export async function selectPoster(db: Queryable, movieId: string): Promise<Poster> {
  const { rows } = await db.query<PosterRow>(SELECT_POSTER, [movieId]);
  if (!rows[0]) throw new NotFoundError();
  return toPoster(rows[0]);
}

// A movie deleted while its poster was being uploaded is a NotFoundError.
export async function upsertPoster(db: Queryable, poster: Omit<Poster, 'updatedAt'>): Promise<Poster> {
  try {
    const { rows } = await db.query<PosterRow>(UPSERT_POSTER, [
      poster.movieId,
      poster.storageKey,
      poster.contentType,
      poster.size,
      poster.etag,
    ]);
    return toPoster(rows[0] as PosterRow);
  } catch (err) {
    if ((err as DatabaseError).code === FOREIGN_KEY_VIOLATION) throw new NotFoundError();
    throw err;
  }
}

export async function deletePoster(db: Queryable, movieId: string): Promise<void> {
  const { rowCount } = await db.query(DELETE_POSTER, [movieId]);
  if (rowCount === 0) throw new NotFoundError();
}

export async function guardUpload(db: Queryable, storageKey: string, graceSeconds: number): Promise<void> {
  await db.query(GUARD_UPLOAD, [storageKey, graceSeconds]);
}

// `prefix`: only keys that start with it; null: any.
export async function claimDeletions(db: Queryable, limit: number, prefix: string | null): Promise<string[]> {
  const like = prefix === null ? null : `${prefix.replace(/[\\%_]/g, '\\$&')}%`;
  const { rows } = await db.query<{ storage_key: string }>(CLAIM_DELETIONS, [limit, like]);
  return rows.map((row) => row.storage_key);
}

export async function forgetDeletion(db: Queryable, storageKey: string): Promise<void> {
  await db.query(FORGET_DELETION, [storageKey]);
}

export async function recordDeletionFailure(db: Queryable, storageKey: string, error: string): Promise<void> {
  await db.query(RECORD_FAILURE, [storageKey, error]);
}
