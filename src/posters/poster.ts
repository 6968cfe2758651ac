// A movie's poster: its metadata, the image types accepted (told by their magic bytes, never
// by the client's Content-Type) and the HTTP rules of reading it (ranges, validators).
import { type Static, Type } from 'typebox';

export type Poster = Readonly<{
  movieId: string;
  storageKey: string;
  contentType: PosterType;
  size: number;
  // hex sha256 of the bytes
  etag: string;
  updatedAt: Date;
}>;

export const POSTER_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'image/gif'] as const;
export type PosterType = (typeof POSTER_TYPES)[number];

export const UNSUPPORTED_TYPE_MESSAGE = 'body must be a JPEG, PNG, WebP or GIF image';

// Enough of a file's start to tell every accepted type (WebP's is the longest).
export const SNIFF_BYTES = 12;

const ascii = (head: Buffer, at: number, text: string) =>
  head.subarray(at, at + text.length).toString('latin1') === text;

export function sniffPosterType(head: Buffer): PosterType | null {
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'image/jpeg';
  if (head.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    return 'image/png';
  }
  if (ascii(head, 0, 'RIFF') && ascii(head, 8, 'WEBP')) return 'image/webp';
  if (ascii(head, 0, 'GIF87a') || ascii(head, 0, 'GIF89a')) return 'image/gif';
  return null;
}

export const PosterJsonSchema = Type.Object(
  {
    movie_id: Type.Integer(),
    content_type: Type.Unsafe<PosterType>(Type.Union(POSTER_TYPES.map((t) => Type.Literal(t)))),
    size: Type.Integer({ description: 'bytes' }),
    etag: Type.String({ description: 'hex SHA-256 of the bytes; the ETag header is it in quotes' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);

export type PosterJson = Static<typeof PosterJsonSchema>;

export function toPosterJson(poster: Poster): PosterJson {
  return {
    movie_id: Number(poster.movieId),
    content_type: poster.contentType,
    size: poster.size,
    etag: poster.etag,
    updated_at: poster.updatedAt.toISOString(),
  };
}

// The strong validator of the ETag header.
export const entityTag = (poster: Poster) => `"${poster.etag}"`;

// HTTP dates have whole seconds; comparisons use the stored time rounded down the same way.
const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

export type Conditionals = Readonly<{
  ifNoneMatch?: string;
  ifModifiedSince?: string;
  ifRange?: string;
  range?: string;
}>;

// RFC 9110 §13.1.2 and §13.1.3 for GET: If-None-Match wins over If-Modified-Since.
export function isNotModified(poster: Poster, headers: Conditionals): boolean {
  if (headers.ifNoneMatch !== undefined) {
    const tag = entityTag(poster);
    return headers.ifNoneMatch
      .split(',')
      .map((candidate) => candidate.trim().replace(/^W\//, ''))
      .some((candidate) => candidate === '*' || candidate === tag);
  }
  if (headers.ifModifiedSince !== undefined) {
    const since = Date.parse(headers.ifModifiedSince);
    return !Number.isNaN(since) && seconds(poster.updatedAt) <= Math.floor(since / 1000);
  }
  return false;
}

export type ByteRange = Readonly<{ start: number; end: number }>;

// The single byte range a request asks for, 'unsatisfiable', or null for the whole poster:
// no Range, one this server does not serve (several ranges, another unit, bad syntax: RFC
// 9110 §14.2 lets a server ignore those), or an If-Range naming another version.
export function requestedRange(poster: Poster, headers: Conditionals): ByteRange | 'unsatisfiable' | null {
  if (headers.range === undefined) return null;
  if (headers.ifRange !== undefined) {
    const validator = headers.ifRange.trim();
    const current = validator.startsWith('"')
      ? validator === entityTag(poster)
      : Date.parse(validator) / 1000 === seconds(poster.updatedAt);
    if (!current) return null;
  }
  const match = /^bytes=(\d*)-(\d*)$/.exec(headers.range.trim());
  if (!match || (match[1] === '' && match[2] === '')) return null;
  const [, first = '', last = ''] = match;
  const size = poster.size;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (last !== '' && Number(last) < start) return null;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}
