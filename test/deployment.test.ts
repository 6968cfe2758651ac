// The deployment files cannot run here (no container engine, no systemd): they are checked
// against each other and against docs/deployment.md, so they cannot drift apart unnoticed.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { buildConfig, checkServeConfig, readSettings } from '../src/config.ts';
import { ROOT } from './processes.ts';

const read = (path: string) => readFileSync(`${ROOT}/${path}`, 'utf8');
const page = read('docs/deployment.md');

// The fenced command that follows "The production command" in docs/deployment.md.
function productionCommand(): string[] {
  const match = /The production command[\s\S]*?```sh\n([^\n]+)\n```/.exec(page);
  assert.ok(match, 'docs/deployment.md has no production command block');
  return (match[1] as string).trim().split(/\s+/);
}

test('when the Dockerfile is read, then its CMD is the documented production command, in a non-root, production-only final stage with a healthcheck', () => {
  const dockerfile = read('Dockerfile');
  const stages = dockerfile.split(/^FROM /m).slice(1);
  assert.ok(stages.length >= 2, 'multi-stage');
  const final = stages.at(-1) as string;
  const cmd = /^CMD (\[.*\])$/m.exec(final);
  assert.ok(cmd, 'final stage has an exec-form CMD');
  assert.deepEqual(JSON.parse(cmd[1] as string), productionCommand());
  assert.match(final, /^USER (?!root\b|0\b)\S+$/m);
  assert.match(final, /^HEALTHCHECK [\s\S]*?\/(livez|readyz)/m);
  assert.doesNotMatch(final, /clients|npm (ci|install)/, 'no workspace, no install in the runtime stage');
  assert.match(dockerfile, /npm ci --omit=dev --workspaces=false/);
  assert.match(read('.dockerignore'), /^clients$/m);
});

test('when compose.yaml is parsed, then it has every service docs/deployment.md names, and two API instances behind Caddy on PostgreSQL', () => {
  const compose = parse(read('compose.yaml'), { merge: true }) as {
    services: Record<string, { build?: string; environment?: Record<string, string>; volumes?: string[] }>;
  };
  const line = /^\s*Services of `compose.yaml`:(.*)$/m.exec(page);
  assert.ok(line, 'docs/deployment.md lists the compose services');
  const named = [...(line[1] as string).matchAll(/`([a-z0-9-]+)`/g)].map((m) => m[1]);
  assert.deepEqual(Object.keys(compose.services).sort(), [...named].sort());
  for (const service of ['postgres', 'redis', 'mailpit', 'caddy'])
    assert.ok(compose.services[service], service);

  const apis = Object.entries(compose.services).filter(([, s]) => s.build === '.');
  assert.equal(apis.length, 2);
  const upstreams = compose.services.caddy?.environment?.GREENLIGHT_UPSTREAMS?.split(' ') ?? [];
  assert.deepEqual(upstreams.sort(), apis.map(([name]) => `${name}:4000`).sort());
  assert.ok(compose.services.caddy?.volumes?.some((v) => v.startsWith('./deploy/Caddyfile:')));
  for (const [, api] of apis) {
    // The environment is a valid production configuration (the command line's own checks).
    const env = { ...api.environment, GREENLIGHT_ENV: 'production' } as Record<string, string>;
    assert.doesNotThrow(() => checkServeConfig(buildConfig(readSettings(productionCommand().slice(3), env))));
    assert.match(env.GREENLIGHT_DB_DSN ?? '', /@postgres:5432\//);
    assert.equal(env.GREENLIGHT_SMTP_HOST, 'mailpit');
  }
});

test('when the systemd unit is read, then ExecStart runs the documented production command and a stop signals the primary alone', () => {
  const unit = read('deploy/greenlight.service');
  const exec = /^ExecStart=(.+)$/m.exec(unit);
  assert.ok(exec);
  const [binary, ...args] = (exec[1] as string).split(/\s+/);
  assert.match(binary as string, /\/node$/);
  assert.deepEqual(['node', ...args], productionCommand());
  assert.match(unit, /^User=greenlight$/m);
  // Caddy on the same machine: without it every public client is 127.0.0.1 (one bucket, one
  // failed-login ceiling, the operator's view of /readyz).
  assert.match(unit, /^Environment=GREENLIGHT_TRUSTED_PROXIES=127\.0\.0\.1$/m);
  assert.ok(
    unit.indexOf('Environment=GREENLIGHT_TRUSTED_PROXIES') < unit.indexOf('EnvironmentFile='),
    'the environment file may override it',
  );
  assert.match(read('docs/deployment.md'), /GREENLIGHT_TRUSTED_PROXIES=127\.0\.0\.1/);
  assert.match(read('deploy/Caddyfile'), /GREENLIGHT_TRUSTED_PROXIES/);
  assert.match(unit, /^Restart=on-failure$/m);
  assert.match(
    unit,
    /^KillMode=mixed$/m,
    'SIGTERM goes to the primary alone, which stops its workers in order',
  );
});

test('when the Caddyfile is read, then it balances over the upstreams, checks readiness and hides operator routes', () => {
  const caddyfile = read('deploy/Caddyfile');
  assert.match(caddyfile, /reverse_proxy \{\$GREENLIGHT_UPSTREAMS:localhost:4000\}/);
  assert.match(caddyfile, /health_uri \/readyz/);
  assert.match(caddyfile, /respond \/debug\/\* "Not Permitted" 403/);
  assert.match(caddyfile, /respond \/metrics "Not Permitted" 403/);
});
