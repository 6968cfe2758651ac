// Flags of the posters: their largest size, and the S3-compatible store that keeps them
// (local disk under <data-dir>/posters when no bucket is set).
import { join } from 'node:path';
import { bool, check, type FlagValues, int, text, when } from '../platform/flags.ts';

export const postersFlags = {
  'poster-max-bytes': int({
    default: '5242880',
    help: 'largest poster `PUT /v1/movies/:id/poster` accepts (413 beyond; at least 1024)',
    // 10,000 parts of lib-storage's 5 MiB: the most one multipart upload of ours can hold.
    rule: (n) =>
      n < 1024
        ? 'must be at least 1024'
        : n > 10_000 * 5 * 1024 * 1024
          ? 'must be at most 52428800000'
          : undefined,
  }),
  's3-endpoint': text({
    default: '',
    help: "URL of an S3-compatible store for the posters (MinIO, Ceph, R2, …); empty with `-s3-bucket` is AWS's own",
    rule: when(
      (url) => url === '' || /^https?:\/\/[^/\s]+\/?$/.test(url),
      'must be an http:// or https:// URL with no path',
    ),
  }),
  's3-bucket': text({
    default: '',
    help: 'bucket of the posters (it must exist); empty keeps them on local disk under `<data-dir>/posters`',
  }),
  's3-region': text({ default: 'us-east-1', help: 'region of the bucket' }),
  's3-access-key-id': text({
    default: '',
    help: "S3 access key; empty uses the AWS SDK's default credential chain (environment, profile, instance role)",
    secret: true,
  }),
  's3-secret-access-key': text({
    default: '',
    help: 'S3 secret key, required with `-s3-access-key-id`',
    secret: true,
  }),
  's3-force-path-style': bool({
    default: 'false',
    help: 'address the bucket as `<endpoint>/<bucket>` (most self-hosted stores) instead of `<bucket>.<host>`',
  }),
};

export function postersConfig(v: FlagValues<typeof postersFlags>, dataDir: string) {
  const bucket = v['s3-bucket'];
  const accessKeyId = v['s3-access-key-id'];
  const secretAccessKey = v['s3-secret-access-key'];
  check(v['s3-endpoint'] === '' || bucket !== '', 's3-bucket', 'is required when -s3-endpoint is set');
  check(
    (accessKeyId === '') === (secretAccessKey === ''),
    's3-secret-access-key',
    'must be set together with -s3-access-key-id',
  );
  return Object.freeze({
    maxBytes: v['poster-max-bytes'],
    // Local storage's directory, used unless `s3` is set.
    directory: join(dataDir, 'posters'),
    // null: local disk. An empty endpoint is AWS's own; empty keys use the SDK's default chain.
    s3:
      bucket === ''
        ? null
        : Object.freeze({
            endpoint: v['s3-endpoint'],
            bucket,
            region: v['s3-region'],
            accessKeyId,
            secretAccessKey,
            forcePathStyle: v['s3-force-path-style'],
          }),
  });
}

export type PostersConfig = ReturnType<typeof postersConfig>;
