// GET /v1/admin/settings, PUT and DELETE /v1/admin/settings/:name: the runtime settings,
// for admins with a full credential.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { requireAdmin } from '../accounts/guards.ts';
import { contextOf } from '../audit/audit.ts';
import type { Config } from '../config.ts';
import type { Db } from '../platform/db.ts';
import { NotFoundError, ValidationError } from '../platform/errors.ts';
import { deferredBody, plainReader, withReader } from '../platform/request.ts';
import { BEARER_REQUIRED, errors, response } from '../platform/schemas.ts';
import { isSetting, SETTING_NAMES } from './setting.ts';
import { changeSetting, listSettings, type SettingActor, type SettingView } from './settings.ts';

const Setting = Type.Object(
  {
    name: Type.String({ examples: ['limiter-burst'] }),
    value: Type.Unknown({
      description: "the stored value, else this process's start-up value",
      examples: [8],
    }),
    source: Type.Union([Type.Literal('setting'), Type.Literal('flag')], {
      description: 'setting: a stored value overrides the start-up flag; flag: none is stored',
    }),
    startup_value: Type.Unknown({
      description: "the start-up flag's value on this process (a feature's default)",
    }),
    updated_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    updated_by: Type.Union([Type.String(), Type.Null()]),
  },
  { additionalProperties: false },
);

const SettingEnvelope = Type.Object({ setting: Setting }, { additionalProperties: false });
const SettingsEnvelope = Type.Object({ settings: Type.Array(Setting) }, { additionalProperties: false });
const NameParams = Type.Object({
  name: Type.String({ description: `one of ${SETTING_NAMES.join(', ')}`, examples: ['limiter-burst'] }),
});
// {"value": <any JSON>} and nothing else.
const ValueSchema = Type.Object(
  {
    value: Type.Unknown({
      description:
        'the flag\'s value as JSON (a number, boolean or string such as "30s"); for feature-*: true, false or {"percent": N}',
      examples: [8],
    }),
  },
  { additionalProperties: false },
);
const ValueBody = withReader(
  ValueSchema,
  plainReader(ValueSchema, {
    notObject: 'body must be a JSON object',
    missing: { value: () => new ValidationError({ value: 'must be provided' }) },
  }),
);

const TAGS = ['admin'];

function toJson(s: SettingView) {
  return {
    name: s.name,
    value: s.value,
    source: s.source,
    startup_value: s.startupValue,
    updated_at: s.updatedAt?.toISOString() ?? null,
    updated_by: s.updatedBy,
  };
}

function actorOf(request: FastifyRequest): SettingActor {
  const identity = request.identity;
  return { id: identity?.id ?? null, email: identity?.email ?? null, label: identity?.email ?? 'unknown' };
}

export async function settingsRoutes(
  app: FastifyInstance,
  { db, config }: Readonly<{ db: Db; config: Config }>,
): Promise<void> {
  app.get(
    '/v1/admin/settings',
    {
      onRequest: requireAdmin,
      schema: {
        operationId: 'listSettings',
        summary: 'The runtime settings and feature flags, with their values on this process (admins)',
        tags: TAGS,
        security: BEARER_REQUIRED,
        response: { 200: response(SettingsEnvelope, 'Every setting'), ...errors(403) },
      },
    },
    async () => ({ settings: (await listSettings(db, config)).map(toJson) }),
  );

  app.put(
    '/v1/admin/settings/:name',
    {
      onRequest: requireAdmin,
      // An unknown setting is a 404 whatever the body.
      attachValidation: true,
      schema: {
        operationId: 'changeSetting',
        summary:
          "Change a setting on every instance within a second, checked as its start-up flag is; the flag's own value returns it to the flag (admins)",
        tags: TAGS,
        security: BEARER_REQUIRED,
        params: NameParams,
        body: ValueBody,
        response: {
          200: response(SettingEnvelope, 'The setting as stored'),
          ...errors(400, 403, 404, 422),
        },
      },
    },
    async (request) => {
      const { name } = request.params as { name: string };
      if (!isSetting(name)) throw new NotFoundError();
      const { value } = deferredBody(request, ValueBody);
      const setting = await changeSetting(db, config, name, value, actorOf(request), contextOf(request));
      return { setting: toJson(setting) };
    },
  );

  app.delete(
    '/v1/admin/settings/:name',
    {
      onRequest: requireAdmin,
      schema: {
        operationId: 'resetSetting',
        summary: 'Return a setting to its start-up flag on every instance (admins)',
        tags: TAGS,
        security: BEARER_REQUIRED,
        params: NameParams,
        response: { 200: response(SettingEnvelope, 'The setting, back to its flag'), ...errors(403, 404) },
      },
    },
    async (request) => {
      const { name } = request.params as { name: string };
      const setting = await changeSetting(db, config, name, undefined, actorOf(request), contextOf(request));
      return { setting: toJson(setting) };
    },
  );
}
