// Real clients of the change streams: an SSE reader over fetch (undici) and a `ws` client.
import WebSocket from 'ws';
import { waitFor } from './helpers.ts';

export type SseEvent = { id?: string; event?: string; data?: string };

export type SseClient = {
  status: number;
  headers: Headers;
  events: SseEvent[];
  comments: string[];
  // resolves when the server ends the stream
  ended: Promise<void>;
  close: () => void;
};

export async function openSse(
  url: string,
  options: { token?: string; headers?: Record<string, string> } = {},
): Promise<SseClient> {
  const controller = new AbortController();
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const res = await fetch(url, { headers, signal: controller.signal });
  const client: SseClient = {
    status: res.status,
    headers: res.headers,
    events: [],
    comments: [],
    ended: Promise.resolve(),
    close: () => controller.abort(),
  };
  if (res.status !== 200 || !res.body) {
    await res.text();
    return client;
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  client.ended = (async () => {
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        let end = buffer.indexOf('\n\n');
        while (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event: SseEvent = {};
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) client.comments.push(line.slice(1).trim());
            const [, field, text] = /^(id|event|data): ?(.*)$/.exec(line) ?? [];
            if (field) event[field as keyof SseEvent] = text;
          }
          if (Object.keys(event).length > 0) client.events.push(event);
          end = buffer.indexOf('\n\n');
        }
      }
    } catch {
      // aborted by close()
    }
  })();
  return client;
}

export type WsClient = {
  socket: WebSocket;
  messages: Record<string, unknown>[];
  closed: Promise<{ code: number; reason: string }>;
  send: (message: unknown) => void;
};

// Opens a WebSocket; refused upgrades reject with the HTTP status and body.
// `autoPong: false` makes a client that never answers pings.
export function openWs(url: string, token?: string, options: { autoPong?: boolean } = {}): Promise<WsClient> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, {
      ...options,
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    const messages: Record<string, unknown>[] = [];
    const closed = new Promise<{ code: number; reason: string }>((done) =>
      socket.on('close', (code, reason) => done({ code, reason: reason.toString() })),
    );
    socket.on('message', (data) => messages.push(JSON.parse(data.toString()) as Record<string, unknown>));
    socket.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      res.on('end', () =>
        reject(
          Object.assign(new Error(`HTTP ${res.statusCode}`), {
            status: res.statusCode,
            body,
            headers: res.headers,
          }),
        ),
      );
    });
    socket.on('error', (err) => reject(err));
    socket.on('open', () =>
      resolve({ socket, messages, closed, send: (message) => socket.send(JSON.stringify(message)) }),
    );
  });
}

// Polls until `ready` returns true or the deadline passes (then fails with `what`).
export async function until(ready: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  await waitFor(what, ready, timeoutMs);
}
