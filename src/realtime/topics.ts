// The topics a client can stream, each described once: its outbox table, how an event's data
// looks, who may read it, and what wakes its feed. Everything else (the feed, follow, the SSE
// handler, the WebSocket) is the same code for every topic.
import { permissionRefusal } from '../accounts/guards.ts';
import type { Identity } from '../accounts/user.ts';
import { scopeRefusal } from '../api-v1/products.routes.ts';
import { type Movie, toMovieJson } from '../movies/movie.ts';
import { MOVIE_EVENTS_CHANNEL } from '../movies/movies.sql.ts';
import { observeMovieChanges } from '../movies/movies.ts';
import { ORDER_EVENTS_CHANNEL, observeOrderChanges, orderOfEventPayload } from '../orders/order-events.ts';
import type { Db } from '../platform/db.ts';
import { toProductJson } from '../products/product.ts';
import { PRODUCT_EVENTS_CHANNEL, productOfEventPayload } from '../products/products.sql.ts';
import { observeProductChanges } from '../products/products.ts';
import { type OutboxStatements, outboxStatements } from './events.sql.ts';

export type Topic = Readonly<{
  // the WebSocket topic
  name: string;
  // the statements reading its outbox (and the `<table>_pruned` marker beside it)
  outbox: OutboxStatements;
  // the key of the changed record in an event's data: {"id","type","occurred_at",<subject>}
  subject: string;
  eventTypes: readonly string[];
  // the record as the event shows it, from its outbox payload
  present: (type: string, payload: Record<string, unknown>) => Record<string, unknown>;
  // why an identity may not (or no longer) read the topic, or null when it may
  refusal: (identity: Identity | null) => Error | null;
  // Whether an identity the topic admits receives an event, given the record it shows (from
  // present): for topics whose records are not all for every reader. Absent: every event.
  // Applied by follow() (src/realtime/stream.ts), the one place SSE and WebSocket send from.
  visible?: (identity: Identity, record: Readonly<Record<string, unknown>>) => boolean;
  // the NOTIFY sent after a change commits (src/realtime/wakeups.ts)
  channel: string;
  // the Redis channel that wakes feeds when -redis-url is set
  redisChannel: string;
  observeChanges: (db: Db, observer: () => Promise<void>) => () => void;
}>;

// The movie as GET /v1/movies/:id shows it (the payload holds its fields, runtime in minutes);
// a deleted movie is only its id and last version. Readers need an activated account with
// movies:read, as GET /v1/movies does.
export const MOVIES: Topic = {
  name: 'movies',
  outbox: outboxStatements('movie_events'),
  subject: 'movie',
  eventTypes: ['movie.created', 'movie.updated', 'movie.deleted'],
  present: (type, payload) =>
    type === 'movie.deleted'
      ? { id: payload.id, version: payload.version }
      : toMovieJson(payload as unknown as Movie),
  refusal: (identity) => permissionRefusal(identity, 'movies:read'),
  channel: MOVIE_EVENTS_CHANNEL,
  redisChannel: 'greenlight:movie-events',
  observeChanges: observeMovieChanges,
};

// The product as GET /api/v1/products/:id shows it; a deleted product is only its id.
// Readers are those the products API lets read: any credential, an API key only with the
// products:read scope.
export const PRODUCTS: Topic = {
  name: 'products',
  outbox: outboxStatements('product_events'),
  subject: 'product',
  eventTypes: ['product.created', 'product.updated', 'product.deleted'],
  present: (type, payload) =>
    type === 'product.deleted' ? { id: payload.id } : toProductJson(productOfEventPayload(payload)),
  refusal: (identity) => scopeRefusal(identity, 'products:read'),
  channel: PRODUCT_EVENTS_CHANNEL,
  redisChannel: 'greenlight:product-events',
  observeChanges: observeProductChanges,
};

// The order as GET /api/v1/orders/{id} shows it, on its creation and each status change.
// Readers are those the orders API lets read (an API key only with orders:read), and each
// event goes only to the order's owner and to admins, as GET /api/v1/orders/{id} answers.
export const ORDERS: Topic = {
  name: 'orders',
  outbox: outboxStatements('order_events'),
  subject: 'order',
  eventTypes: ['order.created', 'order.updated'],
  present: (_type, payload) => orderOfEventPayload(payload),
  refusal: (identity) => scopeRefusal(identity, 'orders:read'),
  visible: (identity, order) => identity.role === 'admin' || order.user_id === identity.id,
  channel: ORDER_EVENTS_CHANNEL,
  redisChannel: 'greenlight:order-events',
  observeChanges: observeOrderChanges,
};

export const TOPICS: readonly Topic[] = [MOVIES, PRODUCTS, ORDERS];
