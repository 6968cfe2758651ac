// The commands of `greenlight` (main.ts is the entry point):
//   greenlight [serve] [flags]
//   greenlight migrate up | down N | down -all | goto V | version | force V | create NAME
//   greenlight seed movies [-count N]
//   greenlight openapi [callbacks]        the OpenAPI 3.1 document (of the callback listener), on stdout
//   greenlight callbacks [upstream | client]
//   greenlight payments stand-in
//   greenlight config list | get NAME | set NAME VALUE | unset NAME
//   greenlight tasks list | run NAME
//   greenlight compile-cache              compile every module ahead of a start (compile-cache.ts)
// Each command's modules are imported when it runs, so that a process loads only what its
// command needs: the cluster primary of `serve` forks and supervises without the application.

import type { Role } from './accounts/user.ts';
import { buildConfig, type Config, ConfigError, readSettings, type Settings, usage } from './config.ts';
import type { Db } from './platform/db.ts';
import type { Jobs } from './platform/jobs.ts';
import { createLogger, type Logger } from './platform/logger.ts';
import { PortInUseError } from './platform/ports.ts';
import { commit, version } from './version.ts';

class UsageError extends Error {}

function integerArg(value: string | undefined, what: string): number {
  if (value === undefined || !/^\d+$/.test(value)) throw new UsageError(`${what} must be a whole number`);
  return Number(value);
}

async function withDatabase<T>(
  config: Config,
  logger: Logger,
  work: (dsn: string) => Promise<T>,
): Promise<T> {
  const { openDatabaseServer } = await import('./platform/database.ts');
  const database = await openDatabaseServer(config, logger);
  try {
    return await work(database.dsn);
  } finally {
    await database.stop();
  }
}

// A one-connection pool on the database (a running server's embedded one too).
function withPool<T>(config: Config, logger: Logger, work: (db: Db) => Promise<T>): Promise<T> {
  return withDatabase(config, logger, async (dsn) => {
    const { createPool } = await import('./platform/db.ts');
    const db = createPool({ ...config.db, dsn, maxOpenConns: 1 });
    try {
      return await work(db);
    } finally {
      await db.end();
    }
  });
}

// `orders retry` enqueues through a job queue of its own, which neither supervises nor
// schedules: the serving processes do.
async function orders(config: Config, logger: Logger, args: string[]): Promise<void> {
  const [{ ORDERS_ARITY, ORDERS_USAGE, ordersCommand }, { ORDERS_QUEUES }, { startJobs, stopJobs }] =
    await Promise.all([
      import('./orders/cli.ts'),
      import('./orders/workflow.queue.ts'),
      import('./platform/jobs.ts'),
    ]);
  const [least, most] = ORDERS_ARITY[args[0] ?? ''] ?? [-1, -1];
  if (args.length - 1 < least || args.length - 1 > most) throw new UsageError(ORDERS_USAGE);
  await withDatabase(config, logger, async (dsn) => {
    const { createPool } = await import('./platform/db.ts');
    const db = createPool({ ...config.db, dsn, maxOpenConns: 1 });
    let jobs: Jobs | undefined;
    const startQueue = async () => {
      jobs = await startJobs(dsn, logger, ORDERS_QUEUES, { supervise: false, schedule: false });
      return jobs;
    };
    try {
      await ordersCommand({ db, jobs: startQueue }, args, console.log);
    } finally {
      if (jobs) await stopJobs(jobs, { graceful: false, wait: true });
      await db.end();
    }
  });
}

async function migrate(config: Config, logger: Logger, settings: Settings, args: string[]): Promise<void> {
  const [action, arg] = args;
  const { createMigrationFiles, Migrator } = await import('./platform/migrations.ts');
  if (action === 'create') {
    if (!arg) throw new UsageError('usage: greenlight migrate create NAME');
    for (const file of createMigrationFiles(arg)) console.log(file);
    return;
  }
  await withDatabase(config, logger, async (dsn) => {
    const migrator = new Migrator(dsn, {
      onStep: (step) => console.log(`${step.version}/${step.direction} ${step.name}`),
    });
    switch (action) {
      case 'up':
        console.log(`applied ${await migrator.up()} migration(s)`);
        break;
      case 'down':
        if (arg === undefined && !settings.get('all')) {
          throw new UsageError('say how many: greenlight migrate down N, or greenlight migrate down -all');
        }
        console.log(
          `reverted ${await migrator.down(arg === undefined ? 'all' : integerArg(arg, 'N'))} migration(s)`,
        );
        break;
      case 'goto':
        console.log(`applied ${await migrator.goto(integerArg(arg, 'V'))} migration(s)`);
        break;
      case 'force': {
        const forced = integerArg(arg, 'V');
        await migrator.force(forced);
        console.log(`version forced to ${forced}`);
        break;
      }
      case 'version': {
        const current = await migrator.version();
        console.log(
          current.version === null ? 'no migration' : `${current.version}${current.dirty ? ' (dirty)' : ''}`,
        );
        break;
      }
      default:
        throw new UsageError(
          'usage: greenlight migrate up | down N | down -all | goto V | version | force V | create NAME',
        );
    }
  });
}

async function seed(config: Config, logger: Logger, settings: Settings, args: string[]): Promise<void> {
  if (args[0] !== 'movies') throw new UsageError('usage: greenlight seed movies [-count N]');
  const count = settings.get('count') as number;
  if (count < 1 || count > 1_000_000) throw new UsageError('-count must be between 1 and 1000000');
  const [{ Migrator }, { createPool }, { generateMovies, seedMovies }] = await Promise.all([
    import('./platform/migrations.ts'),
    import('./platform/db.ts'),
    import('./movies/seed.ts'),
  ]);
  await withDatabase(config, logger, async (dsn) => {
    await new Migrator(dsn).up();
    const db = createPool({ ...config.db, dsn, maxOpenConns: 1 });
    try {
      console.log(`inserted ${await seedMovies(db, generateMovies(count))} movies`);
    } finally {
      await db.end();
    }
  });
}

// Works next to a running server too: on the embedded database it reuses that server.
async function users(config: Config, logger: Logger, args: string[]): Promise<void> {
  const [action, email, ...codes] = args;
  const { ROLES } = await import('./accounts/user.ts');
  const role = action === 'role' && codes.length === 1 ? (codes[0] as Role) : undefined;
  if (action === 'role' && !ROLES.includes(role as Role)) {
    throw new UsageError(`usage: greenlight users role EMAIL ${ROLES.join('|')}`);
  }
  if ((action !== 'grant' && action !== 'revoke' && action !== 'role') || !email || codes.length === 0) {
    throw new UsageError(
      'usage: greenlight users grant|revoke EMAIL PERMISSION... | users role EMAIL admin|user',
    );
  }
  const [{ setRole }, permissions, { selectUserByEmail }, { recordEvent }, { NotFoundError }] =
    await Promise.all([
      import('./accounts/accounts.ts'),
      import('./accounts/permissions.sql.ts'),
      import('./accounts/users.sql.ts'),
      import('./audit/audit.ts'),
      import('./platform/errors.ts'),
    ]);
  await withPool(config, logger, async (db) => {
    const user = await selectUserByEmail(db, email).catch((err: unknown) => {
      throw err instanceof NotFoundError ? new UsageError(`no user with e-mail ${email}`) : err;
    });
    if (role) {
      console.log(`${email}: role ${(await setRole(db, email, role)).role}`);
      return;
    }
    if (action === 'grant') await permissions.grantPermissions(db, user.id, codes);
    else await permissions.revokePermissions(db, user.id, codes);
    await recordEvent(db, action === 'grant' ? 'permission.grant' : 'permission.revoke', {
      email: user.email,
      details: { codes },
    });
    console.log(
      `${email}: ${(await permissions.selectPermissionsForUser(db, user.id)).join(' ') || '(no permissions)'}`,
    );
  });
}

async function compileCache(rest: string[]): Promise<void> {
  if (rest.length > 1 || (rest[0] !== undefined && rest[0] !== 'workers'))
    throw new UsageError('usage: greenlight compile-cache');
  const { compileEveryModule } = await import('./compile-cache.ts');
  for (const line of await compileEveryModule(rest[0] === 'workers' ? 'workers' : undefined))
    console.log(line);
}

export async function main(argv: string[]): Promise<void> {
  const settings = readSettings(argv);
  const [command = 'serve', ...rest] = settings.args.positionals;
  if (settings.get('version')) return console.log(`Version:\t${version}\nCommit:\t\t${commit}`);
  if (settings.get('help') || command === 'help') return console.log(usage());
  // Before the configuration: an image build runs it without the service's settings.
  if (command === 'compile-cache') return compileCache(rest);
  const config = buildConfig(settings);
  const logger = createLogger(config.logLevel);
  switch (command) {
    case 'serve':
      return (await import('./server.ts')).serve(config, logger);
    case 'migrate':
      return migrate(config, logger, settings, rest);
    case 'seed':
      return seed(config, logger, settings, rest);
    case 'users':
    case 'orders':
      return (command === 'users' ? users : orders)(config, logger, rest);
    case 'config': {
      const { CONFIG_ARITY, CONFIG_USAGE, configCommand } = await import('./settings/cli.ts');
      if (CONFIG_ARITY[rest[0] ?? ''] !== rest.length - 1) throw new UsageError(CONFIG_USAGE);
      return withPool(config, logger, (db) => configCommand(db, config, rest, console.log));
    }
    case 'tasks': {
      const [{ TASKS_ARITY, TASKS_USAGE, tasksCommand }, { TASKS }] = await Promise.all([
        import('./tasks/cli.ts'),
        import('./background.ts'),
      ]);
      if (TASKS_ARITY[rest[0] ?? ''] !== rest.length - 1) throw new UsageError(TASKS_USAGE);
      return withPool(config, logger, (db) => tasksCommand({ db, logger, config }, TASKS, rest, console.log));
    }
    case 'openapi': {
      if (rest[0] !== undefined && rest[0] !== 'callbacks') {
        throw new UsageError('usage: greenlight openapi [callbacks]');
      }
      const document =
        rest[0] === 'callbacks'
          ? (await import('./callbacks/listener.ts')).callbackOpenApiDocument
          : (await import('./app.ts')).openApiDocument;
      console.log(JSON.stringify(await document(config, logger), null, 2));
      return;
    }
    case 'jwt': {
      if (rest[0] !== 'rotate') throw new UsageError('usage: greenlight jwt rotate [-jwt-key-dir DIR]');
      const { rotateKeys } = await import('./auth/jwt-keys.ts');
      const { kid, removed } = rotateKeys(config.auth.jwtKeyDir, config.auth.jwtTtlMs);
      console.log(`new signing key ${kid}${removed.length ? `; removed expired ${removed.join(' ')}` : ''}`);
      return;
    }
    case 'callbacks': {
      const { runCallbackClient, serveCallbacks, serveStandInUpstream } = await import('./callbacks/cli.ts');
      if (rest[0] === undefined) return serveCallbacks(config, logger);
      if (rest[0] === 'upstream') return serveStandInUpstream(config, logger);
      if (rest[0] === 'client') return runCallbackClient(config, logger);
      throw new UsageError('usage: greenlight callbacks [upstream | client]');
    }
    case 'payments':
      if (rest[0] !== 'stand-in') {
        throw new UsageError(
          'usage: greenlight payments stand-in [-addr HOST:PORT] [-decline-rate R] [-error-rate R] [-lost-rate R] [-latency D]',
        );
      }
      return (await import('./payments/cli.ts')).servePaymentsStandIn(config, logger);
    case 'demo':
      if (rest[0] !== 'cors')
        throw new UsageError('usage: greenlight demo cors [-demo-port 9000] [-demo-api URL]');
      return (await import('./demo/cors-demo.ts')).serveCorsDemo(
        settings.get('demo-port') as number,
        settings.get('demo-api') as string,
        logger,
      );
    default:
      throw new UsageError(`unknown command "${command}"\n\n${usage()}`);
  }
}

// The modules of the other failures are imported only now: a command that failed with one
// of them has them loaded already.
async function knownFailures(): Promise<ReadonlyArray<abstract new (...args: never[]) => Error>> {
  const [migrations, embedded, prepare, permissions, tasks, orders] = await Promise.all([
    import('./platform/migrations.ts'),
    import('./platform/embedded-postgres.files.ts'),
    import('./prepare.ts'),
    import('./accounts/permissions.sql.ts'),
    import('./tasks/cli.ts'),
    import('./orders/cli.ts'),
  ]);
  return [
    ConfigError,
    UsageError,
    migrations.MigrationError,
    embedded.EmbeddedPostgresError,
    prepare.PreparationError,
    PortInUseError,
    permissions.UnknownPermissionError,
    tasks.TaskCommandError,
    orders.OrderCommandError,
  ];
}

// A database the command cannot reach (refused, down, timed out) or log in to (SQLSTATE class
// 28: a wrong password; 3D: no such database) is the operator's to fix, not a bug: one line,
// whose text (host, port, user) is the driver's and holds no password.
async function isDatabaseRefusal(err: unknown): Promise<boolean> {
  const { isDatabaseUnavailable } = await import('./platform/errors.ts');
  const code = (err as { code?: unknown } | null)?.code;
  return isDatabaseUnavailable(err) || (typeof code === 'string' && /^(28|3D)[0-9A-Z]{3}$/.test(code));
}

// A database without our tables (SQLSTATE 42P01) is most often another one than the
// server's: a command run without the server's -data-dir makes a new, empty one in ./data.
function isDatabaseWithoutTables(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === '42P01';
}

export async function reportFailure(err: unknown): Promise<void> {
  if ((await knownFailures()).some((type) => err instanceof type)) {
    console.error(`greenlight: ${(err as Error).message}`);
  } else if (await isDatabaseRefusal(err)) {
    console.error(`greenlight: cannot use the database: ${(err as Error).message}`);
  } else if (isDatabaseWithoutTables(err)) {
    console.error(
      `greenlight: the database has no Greenlight tables (${(err as Error).message}): give the server's -data-dir or -db-dsn, or create them with \`greenlight migrate up\``,
    );
  } else {
    console.error('greenlight: fatal error:', err);
  }
}
