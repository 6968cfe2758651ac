// Bulk import and export of movies: streamed both ways, so memory stays flat whatever the size.
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { type BulkheadPolicy, BulkheadRejectedError, bulkhead } from 'cockatiel';
import { parse as parseCsv } from 'csv-parse';
import { Type } from 'typebox';
import type { Db, Queryable } from '../platform/db.ts';
import {
  BadRequestError,
  errorResponse,
  PayloadTooLargeError,
  RETRY_AFTER_SECONDS,
  UnavailableError,
} from '../platform/errors.ts';
import { bookBody, type DecodedBody, MAX_BODY_BYTES } from '../platform/json-body.ts';
import { readBody } from '../platform/request.ts';
import { Int32 } from '../platform/schemas.ts';
import type { MovieFilters } from './filters.ts';
import { CreateMovieBody, type Movie, type MovieFields, toMovieJson, validateMovie } from './movie.ts';
import * as sql from './movies.sql.ts';
import { moviesChanged } from './movies.ts';

export const FORMATS = ['ndjson', 'csv'] as const;
export type Format = (typeof FORMATS)[number];

export const CONTENT_TYPES: Readonly<Record<Format, string>> = {
  ndjson: 'application/x-ndjson; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
};

const EXPORT_BATCH = 1000;
const CSV_COLUMNS = ['id', 'title', 'year', 'runtime', 'genres', 'version'] as const;

// OWASP's rule against CSV injection: a cell a spreadsheet would take for a formula (one that
// starts with = + - @, a tab or a carriage return) is written with a single quote before it, and
// quoted. A cell that already starts with quotes before such a character gets one more, so that
// the import, which takes one off (fromCsvCell), gives back exactly what was exported.
const FORMULA = /^'*[=+\-@\t\r]/;
const NEUTRALISED = /^'+[=+\-@\t\r]/;

// RFC 4180: a field holding a comma, a quote or a line break is quoted, quotes doubled.
export function csvField(value: string | number): string {
  const text = String(value);
  if (FORMULA.test(text)) return `"'${text.replaceAll('"', '""')}"`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export const fromCsvCell = (cell: string): string => (NEUTRALISED.test(cell) ? cell.slice(1) : cell);

// Genres travel in one CSV field, comma-separated as in the list's ?genres=.
function csvRow(movie: Movie): string {
  const json = toMovieJson(movie);
  return `${[json.id, json.title, json.year, json.runtime, json.genres.join(','), json.version].map(csvField).join(',')}\r\n`;
}

const ndjsonRow = (movie: Movie) => `${JSON.stringify(toMovieJson(movie))}\n`;

// The export's text, a batch at a time. The first batch is read before anything is sent, so
// a failing database is still an error response; later batches follow the client's pace.
export async function exportMovies(
  db: Db,
  filters: MovieFilters,
  format: Format,
): Promise<AsyncIterable<string>> {
  const first = await sql.selectMovieBatch(db, filters, null, EXPORT_BATCH);
  const row = format === 'csv' ? csvRow : ndjsonRow;
  const column = filters.sort.replace('-', '') as 'id' | 'title' | 'year' | 'runtime';
  return (async function* () {
    if (format === 'csv') yield `${CSV_COLUMNS.join(',')}\r\n`;
    let batch = first;
    while (batch.length > 0) {
      yield batch.map(row).join('');
      if (batch.length < EXPORT_BATCH) return;
      const last = batch[batch.length - 1] as Movie;
      batch = await sql.selectMovieBatch(db, filters, { value: last[column], id: last.id }, EXPORT_BATCH);
    }
  })();
}

// A line of an import is a POST /v1/movies body; `id` and `version` (an export's) are ignored.
const ImportRow = bookBody(
  Type.Object(
    { ...CreateMovieBody.properties, id: Type.Optional(Int32()), version: Type.Optional(Int32()) },
    { additionalProperties: false },
  ),
);

export type RowError = Readonly<{ line: number; error: string | Record<string, string> }>;
export type ImportReport = { imported: number; failed: number; errors: RowError[] };
type Row = Readonly<{ line: number; body: Buffer } | { line: number; error: string }>;

export const MAX_REPORTED_ERRORS = 100;
const IMPORT_BATCH = 1000;
// Rows of one import (blank lines not counted): a bound on its work apart from its bytes.
export const MAX_IMPORT_ROWS = 1_000_000;
// A movie's record is a few hundred bytes at most (a title and five genres of 500 bytes, the
// numbers); a header names at most the six columns of an export. csv-parse would otherwise
// buffer a field of any length and split a line into any number of fields.
export const MAX_CSV_RECORD_BYTES = 65_536;
export const MAX_CSV_FIELDS = 16;

// The bytes of an upload, refused past `maxBytes` however they are framed.
async function* limited(source: Readable, maxBytes: number): AsyncGenerator<Buffer> {
  let total = 0;
  // Reading stops early on an oversized body or a failing database; the request stream must
  // then stay open for the response (Node discards the rest of the body).
  for await (const chunk of source.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > maxBytes) throw new PayloadTooLargeError(`body must not be larger than ${maxBytes} bytes`);
    yield chunk;
  }
}

// NDJSON: one body a line; blank lines are skipped but counted. A line longer than a POST body
// may be is an error of its own, and is not kept in memory.
async function* ndjsonRows(bytes: AsyncIterable<Buffer>): AsyncGenerator<Row> {
  let line = 0;
  let parts: Buffer[] = [];
  let length = 0;
  let tooLong = false;
  const finish = (): Row | null => {
    line++;
    const body = Buffer.concat(parts);
    const wasTooLong = tooLong;
    parts = [];
    length = 0;
    tooLong = false;
    if (wasTooLong) return { line, error: `body must not be larger than ${MAX_BODY_BYTES} bytes` };
    return body.toString().trim() === '' ? null : { line, body };
  };
  for await (const chunk of bytes) {
    let start = 0;
    for (let end = chunk.indexOf(10); end !== -1; end = chunk.indexOf(10, start)) {
      if (!tooLong) parts.push(chunk.subarray(start, end));
      const row = finish();
      if (row) yield row;
      start = end + 1;
    }
    if (start < chunk.length && !tooLong) {
      parts.push(chunk.subarray(start));
      length += chunk.length - start;
      if (length > MAX_BODY_BYTES) {
        tooLong = true;
        parts = [];
      }
    }
  }
  if (length > 0 || tooLong) {
    const row = finish();
    if (row) yield row;
  }
}

const CSV_INTEGERS = new Set(['year', 'id', 'version']);

// CSV: a header naming the columns (title, year, runtime, genres; id and version ignored),
// then one movie a record. Each record becomes the JSON body it stands for, so the POST
// decoder's rules and messages apply: an integer column that is not a number is a wrong type.
async function* csvRows(bytes: AsyncIterable<Buffer>): AsyncGenerator<Row> {
  // A broken record is skipped and reported rather than failing the stream, which would drop
  // the records parsed before it.
  const broken: Row[] = [];
  const parser = parseCsv({
    info: true,
    relax_column_count: true,
    skip_empty_lines: true,
    bom: true,
    skip_records_with_error: true,
    max_record_size: MAX_CSV_RECORD_BYTES,
    on_skip: (err) => {
      const { lines = 0, code } = (err ?? {}) as { lines?: number; code?: string };
      // Thrown here, an error ends the parse: the upload is refused, not read to its end.
      if (code === 'CSV_MAX_RECORD_SIZE') {
        throw new PayloadTooLargeError(
          `CSV record at line ${lines} must not be larger than ${MAX_CSV_RECORD_BYTES} bytes`,
        );
      }
      broken.push({ line: lines, error: `malformed CSV: ${err?.message ?? 'unreadable record'}` });
      return undefined;
    },
    // Called for each field as it is read, so a record of too many fields stops at the first
    // one too many; the value is kept as it is.
    cast: (value, context) => {
      if (context.index >= MAX_CSV_FIELDS) {
        throw new BadRequestError(
          `CSV record at line ${context.lines} must not have more than ${MAX_CSV_FIELDS} fields`,
        );
      }
      return value;
    },
  });
  const feed = (async () => {
    try {
      for await (const chunk of bytes) {
        if (!parser.write(chunk)) await Promise.race([once(parser, 'drain'), once(parser, 'close')]);
        if (parser.destroyed) return;
      }
      parser.end();
    } catch (err) {
      parser.destroy(err as Error);
    }
  })();
  let header: string[] | null = null;
  try {
    for await (const { record, info } of parser as AsyncIterable<{
      record: string[];
      info: { lines: number };
    }>) {
      while (broken.length > 0 && (broken[0] as Row).line < info.lines) yield broken.shift() as Row;
      if (header === null) {
        header = record;
        continue;
      }
      if (record.length !== header.length) {
        yield { line: info.lines, error: `record has ${record.length} fields, the header ${header.length}` };
        continue;
      }
      const body: Record<string, unknown> = {};
      header.forEach((name, i) => {
        const cell = fromCsvCell(record[i] as string);
        if (name === 'genres') body[name] = cell === '' ? [] : cell.split(',');
        else body[name] = CSV_INTEGERS.has(name) && /^-?\d+$/.test(cell) ? Number(cell) : cell;
      });
      yield { line: info.lines, body: Buffer.from(JSON.stringify(body)) };
    }
    yield* broken;
  } finally {
    // A reader that stops early (a failing database) must not leave the feed waiting to write.
    parser.destroy();
    await feed;
  }
}

// Adds the row's movie to `batch`, or returns why it cannot be stored: the message (or the
// field messages) POST /v1/movies would answer.
function check(body: Buffer, batch: MovieFields[]): RowError['error'] | null {
  try {
    const input = readBody(ImportRow, body) as DecodedBody<typeof ImportRow>;
    validateMovie(input);
    const { title, year, runtime, genres } = input as Required<typeof input>;
    batch.push({ title, year, runtime, genres });
    return null;
  } catch (err) {
    const response = errorResponse(err);
    if (response.status >= 500) throw err;
    return response.error;
  }
}

export type ImportOptions = Readonly<{
  format: Format;
  atomic: boolean;
  maxBytes: number;
  workers: number;
  maxRows?: number;
  // An atomic import's first statement, in its transaction (a command records its message id
  // there, so that the import and that record commit or roll back together); throwing
  // rolls the import back.
  claim?: (tx: Queryable) => Promise<void>;
}>;

// An atomic import holds a pool connection for as long as its client takes to send the body:
// at most a quarter of the pool is theirs at once, the others wait their turn holding none,
// so stalled uploads cannot take every connection from the rest of the API (an outside
// review: 25 imports that sent 13 bytes each made every other request wait and answer 503).
const ATOMIC_SHARE_OF_POOL = 4;
const ATOMIC_QUEUE = 1000;
const atomicSlots = new WeakMap<Db, BulkheadPolicy>();

function atomicSlot(db: Db): BulkheadPolicy {
  let slot = atomicSlots.get(db);
  if (!slot) {
    slot = bulkhead(Math.max(1, Math.floor((db.options.max ?? 10) / ATOMIC_SHARE_OF_POOL)), ATOMIC_QUEUE);
    atomicSlots.set(db, slot);
  }
  return slot;
}

// Every row is checked as POST /v1/movies checks a body; good rows are inserted a batch at a
// time, `workers` batches at once. Atomic imports run in one transaction on one connection
// (so one batch at a time) and stop inserting at the first bad row, but keep checking.
export async function importMovies(db: Db, source: Readable, options: ImportOptions): Promise<ImportReport> {
  if (!options.atomic) return runImport(db, source, options);
  try {
    return await atomicSlot(db).execute(() => runImport(db, source, options));
  } catch (err) {
    if (!(err instanceof BulkheadRejectedError)) throw err;
    throw new UnavailableError('too many atomic imports in progress; retry later', RETRY_AFTER_SECONDS);
  }
}

async function runImport(db: Db, source: Readable, options: ImportOptions): Promise<ImportReport> {
  const report: ImportReport = { imported: 0, failed: 0, errors: [] };
  const bytes = limited(source, options.maxBytes);
  const rows = options.format === 'csv' ? csvRows(bytes) : ndjsonRows(bytes);
  const client = options.atomic ? await db.connect() : null;
  const target: Queryable = client ?? db;
  const inFlight = new Set<Promise<void>>();
  const limit = client ? 1 : options.workers;
  let batch: MovieFields[] = [];
  let failure: unknown = null;
  let seen = 0;
  const maxRows = options.maxRows ?? MAX_IMPORT_ROWS;
  const flush = async () => {
    const movies = batch;
    batch = [];
    if (movies.length === 0 || (report.failed > 0 && client)) return;
    while (inFlight.size >= limit) await Promise.race(inFlight);
    if (failure) throw failure;
    const insert = sql.insertMovies(target, movies).then(
      async (count) => {
        report.imported += count;
        // Outside a transaction each batch is committed on its own and seen at once.
        if (!client) await moviesChanged(db, []);
      },
      (err: unknown) => {
        failure ??= err;
      },
    );
    const tracked = insert.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };
  try {
    if (client) {
      await client.query('BEGIN');
      await options.claim?.(client);
    }
    for await (const row of rows) {
      if (++seen > maxRows) throw new PayloadTooLargeError(`import must not have more than ${maxRows} rows`);
      const error = 'error' in row ? row.error : check(row.body, batch);
      if (error !== null) {
        report.failed++;
        if (report.errors.length < MAX_REPORTED_ERRORS) report.errors.push({ line: row.line, error });
      }
      if (batch.length >= IMPORT_BATCH) await flush();
    }
    await flush();
    await Promise.all(inFlight);
    if (failure) throw failure;
    if (client) {
      if (report.failed > 0) {
        await client.query('ROLLBACK');
        report.imported = 0;
      } else {
        await client.query('COMMIT');
        await moviesChanged(db, []);
      }
    }
    return report;
  } catch (err) {
    await Promise.allSettled(inFlight);
    if (client) await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client?.release();
  }
}
