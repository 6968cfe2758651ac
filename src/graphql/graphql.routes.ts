// /graphql: GraphQL Yoga behind one Fastify route, so the root hooks (request id, CORS,
// authentication, rate limiting, metrics, the request log) run for it as for every route.

import { costLimitRule } from '@escape.tech/graphql-armor-cost-limit';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { renderGraphiQL } from '@graphql-yoga/render-graphiql';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GraphQLError, NoSchemaIntrospectionCustomRule, type ValidationContext } from 'graphql';
import { createYoga, type Plugin } from 'graphql-yoga';
import { type TSchema, Type } from 'typebox';
import type { Config } from '../config.ts';
import type { Db } from '../platform/db.ts';
import { type ErrorResponse, errorResponse } from '../platform/errors.ts';
import { errorHandler } from '../platform/http.ts';
import type { Logger } from '../platform/logger.ts';
import { BEARER_OPTIONAL, response } from '../platform/schemas.ts';
import { buildGraphqlSchema, type GraphqlContext } from './schema.ts';

export const GRAPHQL_PATHS = ['/graphql'] as const;

const GraphqlError = Type.Object({
  message: Type.String(),
  locations: Type.Optional(Type.Array(Type.Object({ line: Type.Integer(), column: Type.Integer() }))),
  path: Type.Optional(Type.Array(Type.Union([Type.String(), Type.Integer()]))),
  extensions: Type.Optional(
    Type.Object(
      {
        code: Type.Optional(Type.String({ examples: ['FORBIDDEN', 'VALIDATION', 'EDIT_CONFLICT'] })),
        status: Type.Optional(Type.Integer({ description: 'the status the REST route would answer' })),
        error: Type.Optional(
          Type.Unknown({ description: "the REST route's error body: a message, or a field map for 422" }),
        ),
      },
      { additionalProperties: true },
    ),
  ),
});

const GraphqlResult = Type.Object(
  {
    data: Type.Optional(Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()])),
    errors: Type.Optional(Type.Array(GraphqlError)),
    extensions: Type.Optional(Type.Object({}, { additionalProperties: true })),
  },
  { additionalProperties: false },
);

const GraphqlBody = Type.Object(
  {
    query: Type.String({ examples: ['{ movie(id: 1) { id title version } }'] }),
    variables: Type.Optional(Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()])),
    operationName: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    extensions: Type.Optional(Type.Object({}, { additionalProperties: true })),
  },
  { additionalProperties: true },
);

const GraphqlQuery = Type.Object({
  query: Type.String({ description: 'a query (mutations need POST)' }),
  variables: Type.Optional(Type.String({ description: 'JSON-encoded variables' })),
  operationName: Type.Optional(Type.String()),
});

// Errors come in GraphQL's shape: the REST route's status and body travel in `extensions`.
const GRAPHQL_ERRORS: Record<number, TSchema> = {
  400: response(
    GraphqlResult,
    'Not a GraphQL request: malformed JSON, no query, a syntax or validation error, too deep or too costly',
  ),
  401: response(GraphqlResult, 'invalid or missing authentication token', {
    'WWW-Authenticate': {
      type: 'string',
      description: '"Bearer" when the token is malformed, unknown or expired',
    },
  }),
  429: response(GraphqlResult, 'rate limit exceeded', {
    'Retry-After': {
      type: 'integer',
      description: 'seconds until a request will be accepted again',
      required: true,
    },
  }),
};

const OPERATION = {
  tags: ['graphql'],
  security: BEARER_OPTIONAL,
  description:
    'Resolver errors (permissions, validation, not found, edit conflicts) answer 200 with `errors`, each carrying the REST status and body in `extensions`.',
};

const CODES: Readonly<Record<number, string>> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  409: 'EDIT_CONFLICT',
  413: 'BAD_REQUEST',
  422: 'VALIDATION',
  429: 'RATE_LIMITED',
};

// A REST error response as a GraphQL error: the REST body's `error` (a message or a field
// map) travels unchanged in the extensions.
function graphqlError(response: ErrorResponse, located?: GraphQLError): GraphQLError {
  return new GraphQLError(typeof response.error === 'string' ? response.error : 'validation failed', {
    nodes: located?.nodes,
    source: located?.source,
    positions: located?.positions,
    path: located?.path,
    extensions: {
      code: CODES[response.status] ?? 'INTERNAL_SERVER_ERROR',
      status: response.status,
      error: response.error,
    },
  });
}

// Resolver errors are domain errors: the one error table decides what the client sees.
function maskError(logger: Logger) {
  return (error: unknown): Error => {
    const original = error instanceof GraphQLError ? error.originalError : error;
    // GraphQL's own errors (syntax, validation, variable coercion) are client errors already.
    if (original === undefined || original instanceof GraphQLError) return error as Error;
    const response = errorResponse(original);
    if (response.status >= 500) logger.error({ err: original }, 'graphql resolver failed');
    return graphqlError(response, error instanceof GraphQLError ? error : undefined);
  };
}

function limitError(message: string, code: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code, status: 400, error: message } });
}

// Over-deep and over-costly operations are refused at validation, before any resolver runs.
function limits(maxDepth: number, maxCost: number): Plugin {
  const report = (message: string, code: string) => [
    (context: ValidationContext | null) => context?.reportError(limitError(message, code)),
  ];
  const depthRule = maxDepthRule({
    n: maxDepth,
    propagateOnRejection: false,
    onReject: report(`query depth exceeds the limit of ${maxDepth}`, 'QUERY_TOO_DEEP'),
  });
  const costRule = costLimitRule({
    maxCost,
    propagateOnRejection: false,
    onReject: report(`query cost exceeds the limit of ${maxCost}`, 'QUERY_TOO_COSTLY'),
  });
  return {
    onValidate: ({ addValidationRule }) => {
      addValidationRule(depthRule);
      addValidationRule(costRule);
    },
  };
}

// A result without `data` is a request that failed before execution (no query, a syntax or
// validation error): 400 for every client, where Yoga would answer 200 to `application/json`.
const requestErrorsAre400: Plugin = {
  onResultProcess: ({ result, setResult }) => {
    if (Array.isArray(result) || Symbol.asyncIterator in result || 'data' in result) return;
    if (result.errors?.length)
      setResult({ ...result, extensions: { ...result.extensions, http: { status: 400 } } });
  },
};

const noIntrospection: Plugin = {
  onValidate: ({ addValidationRule }) => addValidationRule(NoSchemaIntrospectionCustomRule),
};

const EXAMPLE_QUERY = `# Add the header {"Authorization": "Bearer <token>"} below (POST /v1/tokens/authentication).
query {
  me { user { name email } permissions }
  movies(sort: "-year", pageSize: 5) {
    movies { id title year runtime genres version }
    metadata { currentPage lastPage totalRecords }
  }
}
`;

export function graphqlRoutes(
  app: FastifyInstance,
  { db, config, logger }: Readonly<{ db: Db; config: Config; logger: Logger }>,
): void {
  const development = config.env === 'development';
  const yoga = createYoga<GraphqlContext>({
    schema: buildGraphqlSchema(),
    graphqlEndpoint: '/graphql',
    // GraphiQL comes inlined from @graphql-yoga/render-graphiql: no CDN (docs/decisions.md).
    graphiql: development ? { title: 'Greenlight GraphiQL', defaultQuery: EXAMPLE_QUERY } : false,
    renderGraphiQL,
    landingPage: false,
    // CORS and the request log are the root hooks' work.
    cors: false,
    logging: false,
    maskedErrors: { maskError: maskError(logger), isDev: false },
    plugins: [
      requestErrorsAre400,
      limits(config.graphql.maxDepth, config.graphql.maxCost),
      ...(config.env === 'production' ? [noIntrospection] : []),
    ],
  });

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    // The root hooks drop Content-Type and the catch-all parser keeps the body as bytes
    // (app.ts); a GraphQL POST body is JSON whatever the client labelled it.
    const post = request.method === 'POST';
    const response = await yoga.fetch(
      `http://localhost${request.url}`,
      {
        method: request.method,
        headers: {
          accept: request.headers.accept ?? '*/*',
          ...(post ? { 'content-type': 'application/json' } : {}),
        },
        body: post ? ((request.body as Buffer | undefined)?.toString() ?? '') : undefined,
      },
      { db, httpRequest: request },
    );
    reply.code(response.status);
    response.headers.forEach((value, name) => {
      if (name !== 'content-length') reply.header(name, value);
    });
    return reply.send(await response.text());
  };
  // Errors of the root hooks (rate limit, bad token, body too large) in GraphQL's shape.
  const graphqlErrors = errorHandler((answer) => ({ errors: [graphqlError(answer).toJSON()] }));
  app.post(
    '/graphql',
    {
      errorHandler: graphqlErrors,
      schema: {
        ...OPERATION,
        operationId: 'graphql',
        summary: 'A GraphQL query or mutation',
        body: GraphqlBody,
        response: { 200: response(GraphqlResult, 'The result: data, and errors if any'), ...GRAPHQL_ERRORS },
      },
    },
    handler,
  );
  app.get(
    '/graphql',
    {
      errorHandler: graphqlErrors,
      schema: {
        ...OPERATION,
        operationId: 'graphqlQuery',
        summary: 'A GraphQL query in the URL (in development, a browser gets GraphiQL here)',
        querystring: GraphqlQuery,
        response: {
          200: response(GraphqlResult, 'The result: data, and errors if any'),
          405: response(GraphqlResult, 'A mutation sent with GET', {
            Allow: { type: 'string', description: 'POST', required: true },
          }),
          ...GRAPHQL_ERRORS,
        },
      },
    },
    handler,
  );
}
