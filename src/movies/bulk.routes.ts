// /v1/movies/export and /v1/movies/import: movies in bulk, streamed both ways.
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type TSchema, Type } from 'typebox';
import { requirePermission } from '../accounts/guards.ts';
import type { OperationsConfig } from '../config.ts';
import type { Db } from '../platform/db.ts';
import { PayloadTooLargeError } from '../platform/errors.ts';
import { withMethodFallbacks } from '../platform/http.ts';
import { first, queryOf, type RawPart, streamedBody, withPartReader } from '../platform/request.ts';
import { BEARER_REQUIRED, ErrorEnvelope, errors, response } from '../platform/schemas.ts';
import { Validator } from '../platform/validator.ts';
import {
  CONTENT_TYPES,
  exportMovies,
  FORMATS,
  type Format,
  importMovies,
  MAX_CSV_FIELDS,
  MAX_CSV_RECORD_BYTES,
  MAX_IMPORT_ROWS,
  MAX_REPORTED_ERRORS,
} from './bulk.ts';
import { readMovieListQuery, SORT_SAFELIST } from './filters.ts';

const FormatQuery = Type.Optional(
  Type.Union(
    FORMATS.map((f) => Type.Literal(f)),
    { default: 'ndjson', description: 'anything else is 422' },
  ),
);

// The export's format (422 alone when wrong), then the list's filters as GET /v1/movies reads them.
const ExportQuery = withPartReader(
  Type.Object({
    format: FormatQuery,
    title: Type.Optional(Type.String({ description: 'as for GET /v1/movies' })),
    genres: Type.Optional(Type.String({ description: 'as for GET /v1/movies' })),
    sort: Type.Optional(
      Type.Union(
        SORT_SAFELIST.map((value) => Type.Literal(value)),
        { description: 'as for GET /v1/movies', default: 'id' },
      ),
    ),
  }),
  (query) => {
    const v = new Validator();
    const format = readFormat(query, v);
    v.assertValid();
    const { title, genres, sort } = readMovieListQuery({
      title: query.title,
      genres: query.genres,
      sort: query.sort,
    });
    return { format, filters: { title, genres, sort } };
  },
);

const ImportQuery = withPartReader(
  Type.Object({
    format: FormatQuery,
    atomic: Type.Optional(
      Type.Boolean({
        default: false,
        description: 'true: all rows or none (one transaction); 422 when any fails',
      }),
    ),
  }),
  (query) => {
    const v = new Validator();
    const format = readFormat(query, v);
    const atomic = first(query.atomic) ?? 'false';
    v.check(atomic === 'true' || atomic === 'false', 'atomic', 'must be true or false');
    v.assertValid();
    return { format, atomic: atomic === 'true' };
  },
);

const RowErrors = Type.Array(
  Type.Object(
    {
      line: Type.Integer({
        minimum: 0,
        description: 'line of the upload (1-based; for CSV where the record ends)',
      }),
      error: Type.Union([Type.String(), Type.Record(Type.String(), Type.String())], {
        description: 'what POST /v1/movies would answer for this row: a message, or one per field',
      }),
    },
    { additionalProperties: false },
  ),
  { description: `the first ${MAX_REPORTED_ERRORS} failing rows` },
);

const ImportReport = Type.Object(
  { imported: Type.Integer(), failed: Type.Integer(), errors: RowErrors },
  { additionalProperties: false },
);

const AtomicRejection = Type.Object(
  {
    error: Type.Record(Type.String(), Type.String(), { examples: [{ format: 'must be ndjson or csv' }] }),
    imported: Type.Optional(Type.Integer()),
    failed: Type.Optional(Type.Integer()),
    errors: Type.Optional(RowErrors),
  },
  { additionalProperties: false },
);

const text = streamedBody(Type.String());
const ExportBody = {
  content: { 'application/x-ndjson': { schema: text }, 'text/csv': { schema: text } },
} as unknown as TSchema;

const TAGS = ['movies'];

function readFormat(query: RawPart, v: Validator): Format {
  const format = first(query.format) ?? 'ndjson';
  v.check(FORMATS.includes(format as Format), 'format', 'must be ndjson or csv');
  return format as Format;
}

export async function bulkRoutes(
  app: FastifyInstance,
  { db, options }: Readonly<{ db: Db; options: OperationsConfig }>,
): Promise<void> {
  // Imports read the request stream themselves: in this scope no parser buffers the body.
  // The payload Fastify hands the parser has passed the preParsing hooks (decompression).
  app.register(
    withMethodFallbacks(async (scope) => {
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
      exportRoute(scope, db);
      importRoute(scope, db, options);
    }),
  );
}

// Every movie of a list query (its filters and sort, no pages), sent as a stream.
function exportRoute(app: FastifyInstance, db: Db): void {
  app.get(
    '/v1/movies/export',
    {
      onRequest: requirePermission('movies:read'),
      schema: {
        operationId: 'exportMovies',
        summary:
          "Every movie of a list query as NDJSON or CSV, streamed (movies:read); the list's filters and sort, no pages",
        tags: TAGS,
        security: BEARER_REQUIRED,
        querystring: ExportQuery,
        response: {
          200: response(
            ExportBody,
            "NDJSON: a movie as GET /v1/movies/:id shows it, a line each. CSV (RFC 4180): a header, then id,title,year,runtime,genres (comma-separated in one field),version; a cell starting with = + - @, a tab or a carriage return is quoted behind a single quote (OWASP's rule against formulas), which the CSV import takes off",
            {
              'Content-Disposition': {
                type: 'string',
                description: 'attachment; filename="movies.ndjson" or "movies.csv"',
                required: true,
              },
            },
          ),
          ...errors(403, 422, 500),
        },
      },
    },
    async (request, reply) => {
      const { format, filters } = queryOf(request, ExportQuery);
      const chunks = await exportMovies(db, filters, format);
      reply
        .type(CONTENT_TYPES[format])
        .header('content-disposition', `attachment; filename="movies.${format}"`);
      return reply.send(Readable.from(chunks));
    },
  );
}

// In the scope whose body is the request stream.
function importRoute(app: FastifyInstance, db: Db, options: OperationsConfig): void {
  app.post(
    '/v1/movies/import',
    {
      onRequest: requirePermission('movies:write'),
      schema: {
        operationId: 'importMovies',
        summary:
          'Create movies from NDJSON or CSV, streamed; each row checked as POST /v1/movies checks a body (movies:write)',
        tags: TAGS,
        security: BEARER_REQUIRED,
        querystring: ImportQuery,
        body: {
          content: {
            'application/x-ndjson': { schema: text },
            'text/csv': { schema: text },
          },
        } as unknown as TSchema,
        response: {
          200: response(
            ImportReport,
            'How many rows were stored and which failed; failing rows never stop the others',
          ),
          400: response(
            ErrorEnvelope,
            `CSV record at line N must not have more than ${MAX_CSV_FIELDS} fields (the header included): the import stops there`,
          ),
          413: response(
            ErrorEnvelope,
            `body must not be larger than ${options.importMaxBytes} bytes (-import-max-bytes); import must not have more than ${MAX_IMPORT_ROWS} rows; CSV record at line N must not be larger than ${MAX_CSV_RECORD_BYTES} bytes. The import stops there`,
          ),
          422: response(
            AtomicRejection,
            'An invalid query (format, atomic), or with atomic=true any failing row: then nothing is stored',
          ),
          503: response(
            ErrorEnvelope,
            'too many atomic imports in progress; retry later: atomic imports use at most a quarter of the database pool at once, and 1,000 more wait their turn',
            { 'Retry-After': { type: 'string', description: 'seconds to wait' } },
          ),
          ...errors(403, 500),
        },
      },
    },
    async (request: FastifyRequest, reply) => {
      const { format, atomic } = queryOf(request, ImportQuery);
      const declared = Number(request.headers['content-length']);
      if (declared > options.importMaxBytes) {
        throw new PayloadTooLargeError(`body must not be larger than ${options.importMaxBytes} bytes`);
      }
      // No body at all (no Content-Length, no chunks) is an empty upload.
      const report = await importMovies(db, (request.body as Readable | undefined) ?? Readable.from([]), {
        format,
        atomic,
        maxBytes: options.importMaxBytes,
        workers: options.importWorkers,
      });
      if (atomic && report.failed > 0) {
        reply.code(422);
        return { error: { rows: `nothing was imported: ${report.failed} failed` }, ...report };
      }
      return report;
    },
  );
}
