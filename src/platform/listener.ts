// One connection LISTENing on a channel (or several), reconnecting a second after it fails. `connected`
// runs on every (re)connection, once LISTEN is in place, so a caller can catch up on what
// it missed while the connection was down; `lost` runs when it goes down.
import pg from 'pg';
import type { Logger } from './logger.ts';

export type ListenHandlers = Readonly<{
  channel: string | readonly string[];
  applicationName: string;
  // processId: the PostgreSQL backend that sent the NOTIFY; channel: where it was sent
  notification: (payload: string, client: pg.Client, processId: number, channel: string) => void;
  connected: (client: pg.Client) => Promise<void> | void;
  lost: () => void;
  // logged (warn) when the connection is lost
  lostMessage: string;
}>;

// Returns a stop function.
export async function listen(
  dsn: string,
  handlers: ListenHandlers,
  logger: Logger,
): Promise<() => Promise<void>> {
  let client: pg.Client | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;

  const connect = async (): Promise<void> => {
    const next = new pg.Client({ connectionString: dsn, application_name: handlers.applicationName });
    let failed = false;
    const fail = (err?: Error) => {
      if (failed) return;
      failed = true;
      handlers.lost();
      if (client === next) client = undefined;
      next.end().catch(() => {});
      if (stopped) return;
      logger.warn({ err }, handlers.lostMessage);
      retry = setTimeout(() => void connect(), 1000);
    };
    next.on('error', fail);
    next.on('end', () => fail());
    next.on('notification', (message) =>
      handlers.notification(message.payload ?? '', next, message.processId, message.channel),
    );
    client = next;
    try {
      await next.connect();
      for (const channel of [handlers.channel].flat()) await next.query(`LISTEN ${channel}`);
      await handlers.connected(next);
    } catch (err) {
      fail(err as Error);
    }
  };

  await connect();
  return async () => {
    stopped = true;
    clearTimeout(retry);
    await client?.end().catch(() => {});
  };
}
