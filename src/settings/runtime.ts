// The settings a running process uses, kept equal to the settings table: one LISTEN
// connection per process hears the NOTIFY every change sends, and every (re)connection
// re-reads the whole table, so a change made while the connection was down is not missed.
// Applying a setting changes behaviour at once: the limiter and CORS read the holders
// below on every request, the log level is pino's, and other parts subscribe (onChange).
import type { Config } from '../config.ts';
import { listen } from '../platform/listener.ts';
import type { Logger } from '../platform/logger.ts';
import {
  type Effective,
  type Feature,
  featureSetting,
  originsOf,
  parseSetting,
  type Rollout,
  rolloutIncludes,
  SETTING_NAMES,
  startupValue,
} from './setting.ts';
import { SETTINGS_CHANNEL, type StoredSetting, selectSettings } from './settings.sql.ts';

// Read by the rate limiter on every request (platform/rate-limit.ts).
export type LimiterLimits = { rps: number; burst: number; enabled: boolean };

type Listener = (name: string, value: Effective) => void;

export class RuntimeSettings {
  readonly limits: LimiterLimits;
  readonly cors: { trustedOrigins: readonly string[] };
  readonly #config: Config;
  readonly #logger: Logger;
  readonly #effective = new Map<string, Effective>();
  readonly #listeners = new Set<Listener>();

  constructor(config: Config, logger: Logger) {
    this.#config = config;
    this.#logger = logger;
    for (const name of SETTING_NAMES) this.#effective.set(name, this.#startup(name));
    this.limits = { ...config.limiter };
    this.cors = { trustedOrigins: config.cors.trustedOrigins };
  }

  get(name: string): Effective | undefined {
    return this.#effective.get(name);
  }

  // The one way to ask whether a feature is on, for a user when there is one: a percentage
  // rollout includes a stable share of users and no anonymous request.
  isEnabled(feature: Feature, user?: Readonly<{ id: number }> | null): boolean {
    return rolloutIncludes(this.#effective.get(featureSetting(feature)) as Rollout, feature, user?.id);
  }

  // Returns a function that unsubscribes.
  onChange(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // Makes the process use `stored` (the whole table): a setting not in it returns to its
  // start-up value. A stored value this version refuses is logged and ignored.
  apply(stored: readonly StoredSetting[]): void {
    const given = new Map(stored.map((s) => [s.name, s.value]));
    for (const name of SETTING_NAMES) {
      let next = this.#startup(name);
      if (given.has(name)) {
        try {
          next = parseSetting(name, given.get(name));
        } catch (err) {
          this.#logger.warn({ err, setting: name, value: given.get(name) }, 'invalid stored setting ignored');
        }
      }
      if (JSON.stringify(next) === JSON.stringify(this.#effective.get(name))) continue;
      this.#effective.set(name, next);
      this.#use(name, next);
      this.#logger.info({ setting: name, value: next }, 'setting applied');
    }
  }

  #startup(name: string): Effective {
    return parseSetting(name, startupValue(this.#config, name));
  }

  #use(name: string, value: Effective): void {
    switch (name) {
      case 'limiter-rps':
        this.limits.rps = value as number;
        break;
      case 'limiter-burst':
        this.limits.burst = value as number;
        break;
      case 'limiter-enabled':
        this.limits.enabled = value as boolean;
        break;
      case 'cors-trusted-origins':
        this.cors.trustedOrigins = originsOf(value);
        break;
      case 'log-level':
        // Child loggers (Fastify's per request, the modules') inherit the level from it.
        this.#logger.level = value as string;
        break;
    }
    for (const listener of this.#listeners) listener(name, value);
  }
}

// Keeps `settings` equal to the table. Returns a stop function.
export function listenForSettingChanges(
  dsn: string,
  settings: RuntimeSettings,
  logger: Logger,
): Promise<() => Promise<void>> {
  let reloading: Promise<void> = Promise.resolve();
  return listen(
    dsn,
    {
      channel: SETTINGS_CHANNEL,
      applicationName: 'greenlight-settings-listener',
      // The whole table each time (a few rows): changes apply in commit order whatever
      // order the notifications are handled in.
      notification: (_name, client) => {
        reloading = reloading
          .then(async () => settings.apply(await selectSettings(client)))
          .catch((err: unknown) => logger.warn({ err }, 'could not re-read the settings'));
      },
      connected: async (client) => settings.apply(await selectSettings(client)),
      lost: () => {},
      lostMessage: 'settings listener lost; changes apply when it reconnects',
    },
    logger,
  );
}
