// /graphql on Mercurius, registered in its own encapsulated context: the root hooks (request
// id, CORS, authentication, rate limiting, metrics, the request log) run for it as for every
// route, while Mercurius's error handler and body handling stay out of the REST routes.
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import {
  type ExecutionResult,
  GraphQLError,
  NoSchemaIntrospectionCustomRule,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';
import mercurius from 'mercurius';
import { type TSchema, Type } from 'typebox';
import { apiErrorResponse } from '../api-v1/api.ts';
import type { Config } from '../config.ts';
import type { Db } from '../platform/db.ts';
import { type ErrorResponse, errorResponse, NotFoundError } from '../platform/errors.ts';
import { errorHandler, sendError, withMethodFallbacks } from '../platform/http.ts';
import type { Logger } from '../platform/logger.ts';
import {
  BEARER_OPTIONAL,
  ErrorEnvelope,
  errors,
  RATE_LIMITED_HEADERS,
  response,
} from '../platform/schemas.ts';
import type { Posters } from '../posters/posters.ts';
import type { RuntimeSettings } from '../settings/runtime.ts';
import { costRule, MAX_MUTATION_FIELDS, mutationFieldsRule } from './cost.ts';
import { isProductsApiFailure } from './dialect.ts';
import { GraphqlQueryString, GraphqlRequestBody, QUERY_HANDLING } from './graphql.ts';
import type { GraphqlContext } from './module.ts';
import { newBudget, ResponseTooLargeError } from './response-size.ts';
import { buildGraphqlSchema, listSizes } from './schema.ts';

const CODES: Readonly<Record<number, string>> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  409: 'EDIT_CONFLICT',
  422: 'VALIDATION',
  429: 'RATE_LIMITED',
};

type ErrorJson = { message: string; extensions?: Record<string, unknown> };

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
// GraphQL's own errors (variable coercion, the limits below) are the client's already.
// A domain error through the error table of the module that raised it: the products API's
// for the products module's resolvers (dialect.ts) and for errors only it knows (its messages
// are the seed's), else the book's.
function domainErrorResponse(err: unknown): ErrorResponse {
  if (isProductsApiFailure(err)) {
    const products = apiErrorResponse(err);
    return { status: products.code, error: products.message };
  }
  const book = errorResponse(err);
  if (book.status < 500) return book;
  const products = apiErrorResponse(err);
  return products.code < 500 ? { status: products.code, error: products.message } : book;
}

function resolverError(error: GraphQLError, logger: Logger): GraphQLError {
  const original = error.originalError;
  if (original === undefined || original instanceof GraphQLError) return error;
  const response = domainErrorResponse(original);
  if (response.status >= 500) logger.error({ err: original }, 'graphql resolver failed');
  return graphqlError(response, error);
}

function limitError(message: string, code: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code, status: 400, error: message } });
}

// graphql-js 16 has no switch for its "Did you mean ...?" hints, which name fields and
// arguments introspection would hide; they always end the message.
const SUGGESTION = / Did you mean .*$/s;

function withoutSuggestion(error: GraphQLError): GraphQLError {
  if (!SUGGESTION.test(error.message)) return error;
  return new GraphQLError(error.message.replace(SUGGESTION, ''), {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    originalError: error.originalError,
    extensions: error.extensions,
  });
}

// Over-deep and over-costly operations, and mutations of too many writes, are refused at validation, before any resolver runs.
function validationRules(config: Config): ValidationRule[] {
  const report = (message: string, code: string) => [
    (context: ValidationContext | null) => context?.reportError(limitError(message, code)),
  ];
  const { maxDepth, maxCost } = config.graphql;
  const rules: ValidationRule[] = [
    maxDepthRule({
      n: maxDepth,
      propagateOnRejection: false,
      onReject: report(`query depth exceeds the limit of ${maxDepth}`, 'QUERY_TOO_DEEP'),
    }) as unknown as ValidationRule,
    costRule(listSizes(), maxCost, () =>
      limitError(`query cost exceeds the limit of ${maxCost}`, 'QUERY_TOO_COSTLY'),
    ),
    mutationFieldsRule(MAX_MUTATION_FIELDS, (count) =>
      limitError(
        `a mutation may have at most ${MAX_MUTATION_FIELDS} fields (aliases included), this one has ${count}`,
        'TOO_MANY_MUTATIONS',
      ),
    ),
  ];
  if (config.env === 'production') rules.push(NoSchemaIntrospectionCustomRule);
  return rules;
}

const asGraphqlError = errorHandler((response) => ({ errors: [graphqlError(response).toJSON()] }));

// Errors before execution: those of the root hooks (bad token, rate limit, body limit) keep
// their REST status and headers; Mercurius's own (syntax, validation, no query, a mutation by
// GET) keep theirs. Both in GraphQL's shape, never a 500 for what the client sent.
function requestErrorHandler(present: (error: GraphQLError) => GraphQLError) {
  return (error: unknown, request: FastifyRequest, reply: FastifyReply): void => {
    const mercuriusError = error as { code?: string; statusCode?: number; errors?: GraphQLError[] };
    if (mercuriusError.code?.startsWith('MER_ERR_') && (mercuriusError.statusCode ?? 500) < 500) {
      const status = mercuriusError.statusCode ?? 400;
      const errors: ErrorJson[] = (mercuriusError.errors ?? [error as Error]).map((e) =>
        e instanceof GraphQLError
          ? present(e).toJSON()
          : { message: e.message, extensions: { code: CODES[status], status } },
      );
      reply.code(status).send({ data: null, errors });
      return;
    }
    asGraphqlError(error, request, reply);
  };
}

// The result of an execution. One that ran into the response-size ceiling is that one error
// and no data, however far it had got.
function formatResult(logger: Logger, present: (error: GraphQLError) => GraphQLError) {
  return (execution: ExecutionResult) => {
    const tooLarge = execution.errors?.find((e) => e.originalError instanceof ResponseTooLargeError);
    if (tooLarge) {
      const message = tooLarge.message;
      return {
        statusCode: 400,
        response: { data: null, errors: [limitError(message, 'RESPONSE_TOO_LARGE')] },
      };
    }
    return {
      statusCode: 200,
      response: {
        data: execution.data ?? null,
        errors: execution.errors?.map((e) => present(resolverError(e, logger))),
      },
    };
  };
}

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

const GraphqlResult = Type.Object({
  data: Type.Optional(Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()])),
  errors: Type.Optional(Type.Array(GraphqlError)),
});

const GRAPHQL_RESPONSES = {
  200: response(
    GraphqlResult,
    'The result. Resolver errors (permissions, validation, not found, edit conflicts) come here too, each with the REST status and body in `extensions`',
  ),
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
  404: response(
    ErrorEnvelope,
    'the requested resource could not be found: the feature flag graphql is off for this request',
  ),
  429: response(GraphqlResult, 'rate limit exceeded', RATE_LIMITED_HEADERS),
};

// Mercurius adds /graphql itself; this gives its two routes their place in the OpenAPI
// document, and our schemas of the body (POST) and the query string (GET), so that
// platform/request.ts reads them (graphql.ts).
// The other methods' fallback (405, OPTIONS) keeps the book's envelope and its error handler.
function describeGraphqlRoute(route: RouteOptions): void {
  if (route.url !== '/graphql' || (route.method !== 'GET' && route.method !== 'POST')) return;
  const get = route.method === 'GET';
  route.schema = {
    ...route.schema,
    operationId: get ? 'graphqlQuery' : 'graphql',
    summary: get ? 'A GraphQL query in the URL (mutations need POST)' : 'A GraphQL query or mutation',
    tags: ['graphql'],
    security: BEARER_OPTIONAL,
    ...(get ? { querystring: GraphqlQueryString } : { body: GraphqlRequestBody }),
    response: get
      ? { ...GRAPHQL_RESPONSES, 405: response(GraphqlResult, 'A mutation sent with GET') }
      : GRAPHQL_RESPONSES,
  };
}

const EXAMPLE_QUERY = `# Add the header {"Authorization": "Bearer <token>"} below (POST /v1/tokens/authentication).
query {
  me { user { name email } permissions }
  movies(sort: "-year", pageSize: 5) {
    movies { id title year runtime genres version }
    metadata { currentPage lastPage totalRecords }
  }
}
`;

export async function graphqlRoutes(
  app: FastifyInstance,
  {
    db,
    config,
    logger,
    features,
    posters,
    orders,
  }: Readonly<{
    db: Db;
    config: Config;
    logger: Logger;
    features: Pick<RuntimeSettings, 'isEnabled'>;
    posters?: Posters;
    orders?: GraphqlContext['orders'];
  }>,
): Promise<void> {
  app.register(
    withMethodFallbacks(async (graphql) => {
      // The feature flag `graphql` (src/settings): off, or not rolled out to this user, the
      // endpoint is not there, in the book's envelope.
      graphql.addHook('onRequest', async (request, reply) => {
        if (features.isEnabled('graphql', request.identity)) return;
        sendError(new NotFoundError(), request, reply);
        return reply;
      });
      graphql.addHook('onRoute', describeGraphqlRoute);
      const present = config.env === 'production' ? withoutSuggestion : (error: GraphQLError) => error;
      await graphql.register(mercurius, {
        schema: buildGraphqlSchema(),
        path: '/graphql',
        // Mercurius's GraphiQL loads React and GraphiQL from unpkg.com; ours is served below.
        graphiql: false,
        ...QUERY_HANDLING,
        validationRules: validationRules(config),
        context: (request): GraphqlContext => ({
          db,
          httpRequest: request,
          posters,
          orders,
          budget: newBudget(),
        }),
        errorHandler: requestErrorHandler(present),
        errorFormatter: formatResult(logger, present),
      });
      if (config.env === 'development') {
        // GraphiQL inlined from @graphql-yoga/render-graphiql: no CDN (docs/decisions.md). Its
        // bundle is a 10 MB string: imported by the first request for the page, not at start.
        let page: string | undefined;
        graphql.get(
          '/graphiql',
          {
            schema: {
              operationId: 'graphiql',
              summary: 'GraphiQL, the in-browser GraphQL IDE (development only)',
              tags: ['graphql'],
              security: BEARER_OPTIONAL,
              response: {
                200: response(
                  { content: { 'text/html': { schema: Type.String() } } } as unknown as TSchema,
                  'The GraphiQL page, all assets inlined',
                ),
                ...errors(),
              },
            },
          },
          async (_request, reply) => {
            page ??= (await import('@graphql-yoga/render-graphiql')).renderGraphiQL({
              title: 'Greenlight GraphiQL',
              endpoint: '/graphql',
              defaultQuery: EXAMPLE_QUERY,
            });
            return reply.type('text/html; charset=utf-8').send(page);
          },
        );
      }
    }),
  );
}
