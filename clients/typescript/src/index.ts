// A typed client for the Greenlight API: every path, parameter, body and response is typed
// from the OpenAPI document (schema.ts), and calls go through openapi-fetch.
//
//   const api = createGreenlightClient('http://localhost:4000');
//   const { data } = await api.POST('/v1/tokens/authentication', { body: { email, password } });
//   api.setToken(data.authentication_token.token);
//   const { data: list } = await api.GET('/v1/movies', { params: { query: { sort: '-year' } } });
import createClient, { type Client } from 'openapi-fetch';
import type { paths } from './schema.ts';

export type { components, operations, paths } from './schema.ts';

export type GreenlightClient = Client<paths> & { setToken: (token: string | undefined) => void };

export function createGreenlightClient(
  baseUrl: string,
  options: { token?: string; fetch?: typeof fetch } = {},
): GreenlightClient {
  let token = options.token;
  const client = createClient<paths>({ baseUrl, fetch: options.fetch });
  client.use({
    onRequest({ request }) {
      if (token !== undefined) request.headers.set('Authorization', `Bearer ${token}`);
      return request;
    },
  });
  return Object.assign(client, {
    setToken: (value: string | undefined) => {
      token = value;
    },
  });
}
