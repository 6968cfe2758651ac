// /v1/movies/:id/poster: upload (streamed), download (ranges, validators), delete.
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type TSchema, Type } from 'typebox';
import { requirePermission } from '../accounts/guards.ts';
import { getMovie } from '../movies/movies.ts';
import { withMethodFallbacks } from '../platform/http.ts';
import { first, paramsOf, streamedBody } from '../platform/request.ts';
import {
  BEARER_REQUIRED,
  ErrorEnvelope,
  emptyResponse,
  errors,
  IdParams,
  MessageEnvelope,
  response,
} from '../platform/schemas.ts';
import {
  entityTag,
  POSTER_TYPES,
  type Poster,
  PosterJsonSchema,
  toPosterJson,
  UNSUPPORTED_TYPE_MESSAGE,
} from './poster.ts';
import * as posters from './posters.ts';

const TAGS = ['posters'];

const PosterEnvelope = Type.Object({ poster: PosterJsonSchema }, { additionalProperties: false });

const image = streamedBody(Type.String({ format: 'binary' }));
const ImageBody = {
  content: Object.fromEntries(POSTER_TYPES.map((type) => [type, { schema: image }])),
} as unknown as TSchema;

const UploadBody = {
  content: Object.fromEntries(
    [...POSTER_TYPES, 'application/octet-stream'].map((type) => [type, { schema: image }]),
  ),
} as unknown as TSchema;

const ConditionalHeaders = Type.Object({
  'if-none-match': Type.Optional(Type.String({ description: 'a current ETag (or *): 304' })),
  'if-modified-since': Type.Optional(
    Type.String({ description: 'not changed since (and no If-None-Match): 304' }),
  ),
  range: Type.Optional(
    Type.String({
      description: 'one range, bytes=first-last, bytes=first- or bytes=-suffix: 206; others are ignored',
    }),
  ),
  'if-range': Type.Optional(
    Type.String({ description: 'an ETag or date: Range applies only if it is current' }),
  ),
});

const header = (description: string, required = true) => ({ type: 'string', description, required });
const VALIDATORS = {
  ETag: header('"<hex SHA-256 of the poster>"'),
  'Last-Modified': header('when the poster was last uploaded'),
};
const CONTENT_HEADERS = {
  ...VALIDATORS,
  'Accept-Ranges': header('bytes'),
  'Content-Length': header('bytes in this response'),
  'X-Content-Type-Options': header('nosniff: browsers keep to the Content-Type the bytes were checked for'),
};

function validatorHeaders(reply: FastifyReply, poster: Poster): void {
  reply.header('etag', entityTag(poster)).header('last-modified', poster.updatedAt.toUTCString());
}

export async function posterRoutes(
  app: FastifyInstance,
  { store }: { store: posters.Posters },
): Promise<void> {
  app.register(
    withMethodFallbacks(async (scope) => {
      // Uploads read the request stream themselves: in this scope no parser buffers a body.
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
      uploadRoute(scope, store);
      downloadRoute(scope, store);
      deleteRoute(scope, store);
    }),
  );
}

const write = requirePermission('movies:write');

// In the scope whose body is the request stream.
function uploadRoute(app: FastifyInstance, store: posters.Posters): void {
  app.put(
    '/v1/movies/:id/poster',
    {
      onRequest: write,
      schema: {
        operationId: 'putPoster',
        summary: `Upload or replace a movie's poster, streamed; its type is read from its bytes (movies:write)`,
        tags: TAGS,
        security: BEARER_REQUIRED,
        params: IdParams,
        body: UploadBody,
        response: {
          200: response(PosterEnvelope, 'The poster as stored'),
          400: response(ErrorEnvelope, 'body must not be empty'),
          413: response(ErrorEnvelope, 'body must not be larger than -poster-max-bytes bytes'),
          415: response(ErrorEnvelope, `${UNSUPPORTED_TYPE_MESSAGE} (told by its first bytes)`),
          ...errors(403, 404, 500),
        },
      },
    },
    async (request: FastifyRequest) => {
      const id = paramsOf(request, IdParams).id;
      await getMovie(store.db, id);
      const declared = request.headers['content-length'];
      const poster = await posters.uploadPoster(
        store,
        id,
        (request.body as Readable | undefined) ?? Readable.from([]),
        declared === undefined ? undefined : Number(declared),
      );
      return { poster: toPosterJson(poster) };
    },
  );
}

// Ranges and validators; never compressed, so ranges count bytes of the poster itself.
function downloadRoute(app: FastifyInstance, store: posters.Posters): void {
  app.get(
    '/v1/movies/:id/poster',
    {
      onRequest: requirePermission('movies:read'),
      compress: false,
      schema: {
        operationId: 'getPoster',
        summary: "A movie's poster, streamed; ranges and conditional requests (movies:read)",
        tags: TAGS,
        security: BEARER_REQUIRED,
        params: IdParams,
        headers: ConditionalHeaders,
        response: {
          200: response(ImageBody, 'The whole poster', CONTENT_HEADERS),
          206: response(ImageBody, 'The range asked for', {
            ...CONTENT_HEADERS,
            'Content-Range': header('bytes first-last/size'),
          }),
          304: emptyResponse('The client has the current poster', VALIDATORS),
          416: response(ErrorEnvelope, 'the requested range is not satisfiable', {
            'Content-Range': header('bytes */size'),
          }),
          ...errors(403, 404, 500),
        },
      },
    },
    async (request, reply) => {
      const id = paramsOf(request, IdParams).id;
      const h = request.headers;
      const read = await posters.readPoster(store, id, {
        ifNoneMatch: first(h['if-none-match']),
        ifModifiedSince: first(h['if-modified-since']),
        ifRange: first(h['if-range']),
        range: first(h.range),
      });
      validatorHeaders(reply, read.poster);
      if (read.notModified) return reply.code(304).send();
      const { poster, range, body } = read;
      reply
        .type(poster.contentType)
        .header('accept-ranges', 'bytes')
        .header('x-content-type-options', 'nosniff');
      if (range) {
        reply
          .code(206)
          .header('content-range', `bytes ${range.start}-${range.end}/${poster.size}`)
          .header('content-length', range.end - range.start + 1);
      } else {
        reply.header('content-length', poster.size);
      }
      return reply.send(body);
    },
  );
}

// The row goes now, its stored object with it (or at the next sweep).
function deleteRoute(app: FastifyInstance, store: posters.Posters): void {
  app.delete(
    '/v1/movies/:id/poster',
    {
      onRequest: write,
      schema: {
        operationId: 'deletePoster',
        summary: "Delete a movie's poster (movies:write)",
        tags: TAGS,
        security: BEARER_REQUIRED,
        params: IdParams,
        response: {
          200: response(MessageEnvelope, 'poster successfully deleted'),
          ...errors(403, 404, 500),
        },
      },
    },
    async (request) => {
      await posters.deletePoster(store, paramsOf(request, IdParams).id);
      return { message: 'poster successfully deleted' };
    },
  );
}
