// The WebSocket protocol of GET /v1/ws, one session per socket: authentication by the first
// message when the upgrade had no credential, subscribe and unsubscribe per topic, pings, and
// the end of the socket (closed, slow consumer, revoked, unresponsive, shutdown, error).
import type { FastifyRequest } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import type { Identity } from '../accounts/user.ts';
import type { Credential } from '../auth/authenticator.ts';
import { InvalidAuthenticationTokenError } from '../platform/errors.ts';
import { resumePoint } from './events.ts';
import type { Owner } from './owners.ts';
import {
  type EndReason,
  feedOf,
  follow,
  ownerOf,
  type RealtimeDeps,
  recordStream,
  type Start,
  startOf,
  type Viewer,
  viewing,
} from './stream.ts';
import { TOPICS, type Topic } from './topics.ts';

export const TOPIC_LIST = TOPICS.map((topic) => `"${topic.name}"`).join(', ');

type SocketOwner = Omit<Owner, 'end' | 'refusal'>;

// A topic's current subscription: a stopped one stops sending even while it still catches up.
type Subscription = { unsubscribe: Promise<() => void> };

// The wsHandler of GET /v1/ws: the upgrade's credential, or else the first message's.
export function serveWebSocket(socket: WebSocket, request: FastifyRequest, deps: RealtimeDeps): void {
  if (request.identity) new WebSocketSession(socket, request, ownerOf(request), request.identity, deps);
  else void authenticateByMessage(socket, request, deps);
}

// A browser cannot send headers with its upgrade: without a credential there, the first
// message must be {"type":"auth","token":"…"}, before the first ping is due.
async function authenticateByMessage(socket: WebSocket, request: FastifyRequest, deps: RealtimeDeps) {
  // Shutdown ends a socket that has not authenticated yet as it ends a session.
  const shutdown = () => closeSocket(socket, 1001, 'server shutting down');
  deps.closers.add(shutdown);
  try {
    await authenticate(socket, request, deps);
  } finally {
    deps.closers.delete(shutdown);
  }
}

async function authenticate(socket: WebSocket, request: FastifyRequest, deps: RealtimeDeps) {
  // Every message is kept from the start: the ones after the first are handled once the
  // token is checked, in order.
  const received: [RawData, boolean][] = [];
  const keep = (message: RawData, binary: boolean) => received.push([message, binary]);
  socket.on('message', keep);
  const first = await new Promise<[RawData, boolean] | undefined>((resolve) => {
    const deadline = setTimeout(() => resolve(undefined), deps.config.wsPingMs);
    const check = () => {
      if (received.length === 0) return;
      clearTimeout(deadline);
      socket.off('message', check);
      resolve(received.shift());
    };
    socket.on('message', check);
    socket.once('close', () => {
      clearTimeout(deadline);
      resolve(undefined);
    });
  });
  const message = first === undefined || first[1] ? undefined : parseMessage(first[0].toString());
  if (message?.type !== 'auth' || typeof message.token !== 'string' || message.token === '')
    return closeSocket(socket, 4401, 'authentication required: send {"type":"auth","token":"…"} first');
  const credential: Credential = { from: 'authorization', value: message.token };
  let identity: Identity;
  try {
    identity = await deps.reauthenticate(credential);
  } catch (err) {
    if (err instanceof InvalidAuthenticationTokenError) return closeSocket(socket, 4401, err.message);
    request.log.error({ err }, 'websocket authentication failed');
    return closeSocket(socket, 1011, 'authentication failed');
  }
  if (socket.readyState !== socket.OPEN) return;
  socket.off('message', keep);
  socket.send(JSON.stringify({ type: 'authenticated' }));
  new WebSocketSession(socket, request, { credential, userId: identity.id }, identity, deps);
  for (const [data, binary] of received) socket.emit('message', data, binary);
}

// An authenticated socket: it lives until it ends, held by its socket's listeners and timers.
class WebSocketSession {
  readonly #socket: WebSocket;
  readonly #request: FastifyRequest;
  readonly #owner: SocketOwner;
  readonly #deps: RealtimeDeps;
  readonly #record: ReturnType<typeof recordStream>;
  readonly #following = new Map<Topic, Subscription>();
  // The topics whose permission a subscribe has checked: those revocation re-checks.
  readonly #permitted = new Set<Topic>();
  readonly #viewer: Viewer;
  readonly #removeOwner: () => void;
  readonly #ping: NodeJS.Timeout;
  // The start of the subscription before: one starts at a time (see #follow).
  #starting: Promise<unknown> = Promise.resolve();
  #ended = false;
  #alive = true;

  constructor(
    socket: WebSocket,
    request: FastifyRequest,
    owner: SocketOwner,
    identity: Identity,
    deps: RealtimeDeps,
  ) {
    this.#socket = socket;
    this.#viewer = { identity };
    this.#request = request;
    this.#owner = owner;
    this.#deps = deps;
    this.#record = recordStream('websocket', request, {
      metrics: deps.metrics,
      closers: deps.closers,
      shutdown: () => this.#end('shutdown', 1001, 'server shutting down'),
    });
    // A withdrawn permission of any subscribed topic ends the socket, as a withdrawn credential
    // does: the client learns it from the close, whichever topic it was.
    this.#removeOwner = deps.owners.add({
      ...owner,
      refusal: viewing(this.#viewer, () => this.#permitted),
      end: (reason) => this.#end('revoked', 1008, reason),
    });
    this.#ping = setInterval(() => {
      if (!this.#alive) return this.#end('unresponsive');
      this.#alive = false;
      socket.ping();
    }, deps.config.wsPingMs);
    socket.on('pong', () => {
      this.#alive = true;
    });
    socket.on('close', () => this.#end('closed'));
    socket.on('message', (data, isBinary) => this.#receive(data, isBinary));
  }

  #end(reason: EndReason, code?: number, why?: string): void {
    if (!this.#record.finish(reason, this.#socket.bufferedAmount)) return;
    this.#ended = true;
    clearInterval(this.#ping);
    for (const topic of [...this.#following.keys()]) this.#stopFollowing(topic);
    this.#removeOwner();
    if (code === undefined) {
      this.#socket.terminate();
      return;
    }
    closeSocket(this.#socket, code, why);
  }

  #send(message: string): void {
    if (this.#ended) return;
    this.#socket.send(message);
    const max = this.#deps.config.maxBufferedBytes;
    if (this.#socket.bufferedAmount > max)
      this.#end('slow_consumer', 1013, `slow consumer: more than ${max} bytes unread`);
  }

  #reply(message: Record<string, unknown>): void {
    this.#send(JSON.stringify(message));
  }

  #stopFollowing(topic: Topic): void {
    this.#permitted.delete(topic);
    void this.#following.get(topic)?.unsubscribe.then(
      (unsubscribe) => unsubscribe(),
      () => {},
    );
    this.#following.delete(topic);
  }

  #receive(data: RawData, isBinary: boolean): void {
    const answer = this.#answer(isBinary ? undefined : parseMessage(data.toString()));
    if (answer) this.#reply(answer);
  }

  // The immediate answer to a client message; a subscribe that goes ahead answers later.
  #answer(message: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
    if (!message) return { type: 'error', message: 'messages are JSON objects with a type' };
    const topic = TOPICS.find((t) => t.name === message.topic);
    if (!topic) return { type: 'error', message: `unknown topic: the topics are ${TOPIC_LIST}` };
    if (message.type === 'subscribe') {
      const after = message.last_event_id;
      if (after !== undefined && !(Number.isSafeInteger(after) && (after as number) >= 0))
        return { type: 'error', message: 'last_event_id must be a non-negative integer' };
      if (this.#following.has(topic)) return { type: 'subscribed', topic: topic.name };
      this.#subscribe(topic, after as number | undefined);
      return undefined;
    }
    if (message.type === 'unsubscribe') {
      this.#stopFollowing(topic);
      return { type: 'unsubscribed', topic: topic.name };
    }
    return { type: 'error', message: 'type must be subscribe or unsubscribe' };
  }

  #subscribe(topic: Topic, after: number | undefined): void {
    const subscription = {} as Subscription;
    const isOpen = () => !this.#ended && this.#following.get(topic) === subscription;
    this.#following.set(topic, subscription);
    subscription.unsubscribe = this.#follow(topic, after, isOpen);
    subscription.unsubscribe.catch((err) => {
      this.#request.log.error({ err }, 'websocket subscription failed');
      this.#end('error', 1011, 'subscription failed');
    });
  }

  // Subscriptions start one at a time per socket, and one withdrawn before its turn does not
  // start: a client sending subscribe and unsubscribe in a loop has one start's queries in
  // flight at most, not one per message (30,000 pairs once took the whole pool). Catching up
  // runs beside the next start.
  async #follow(topic: Topic, after: number | undefined, isOpen: () => boolean): Promise<() => void> {
    const starting = this.#starting.then(() => (isOpen() ? this.#start(topic, after, isOpen) : undefined));
    this.#starting = starting.catch(() => {});
    const start = await starting;
    if (!start) return () => {};
    return follow(this.#deps, feedOf(this.#deps, topic), start, {
      viewer: this.#viewer,
      send: (event) => {
        this.#record.countSent();
        this.#send(event.ws);
      },
      isOpen,
      unread: () => this.#socket.bufferedAmount,
    });
  }

  // The identity is looked up again (through the identity cache) for each subscribe, so a
  // permission granted or withdrawn since the upgrade counts. Undefined when it is refused.
  async #start(topic: Topic, after: number | undefined, isOpen: () => boolean): Promise<Start | undefined> {
    const deps = this.#deps;
    let refused: Error | null;
    try {
      const identity = await deps.reauthenticate(this.#owner.credential);
      this.#viewer.identity = identity;
      refused = topic.refusal(identity);
    } catch (err) {
      if (!(err instanceof InvalidAuthenticationTokenError)) throw err;
      this.#end('revoked', 1008, err.message);
      return undefined;
    }
    if (refused) {
      if (isOpen()) {
        this.#following.delete(topic);
        this.#reply({ type: 'error', topic: topic.name, message: refused.message });
      }
      return undefined;
    }
    if (isOpen()) this.#permitted.add(topic);
    const resume = after === undefined ? undefined : await resumePoint(deps.db, topic, after);
    const start = await startOf(deps.db, topic, resume?.after);
    if (isOpen()) this.#reply({ type: 'subscribed', topic: topic.name });
    if (resume?.gap && isOpen()) this.#reply({ type: 'gap', topic: topic.name, ...resume.gap });
    return start;
  }
}

function parseMessage(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function closeSocket(socket: WebSocket, code: number, why?: string): void {
  socket.close(code, why);
  // A client that never reads never answers the close: its bytes are let go anyway.
  setTimeout(() => socket.terminate(), 1000).unref();
}
