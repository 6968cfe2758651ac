// Where poster bytes live: local disk under the data directory, or any S3-compatible store.
// Keys are made by the posters module, never by a client. Every object is written whole
// before anyone can name it: a temp file renamed into place, or one S3 PUT / completed
// multipart upload.
import { randomUUID } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { PostersConfig } from '../config.ts';
import type { ByteRange } from './poster.ts';

export type PosterStorage = Readonly<{
  kind: 'local' | 's3';
  // Rejects, leaving nothing behind, when `body` fails.
  put: (key: string, body: Readable, contentType: string) => Promise<void>;
  // null when there is no such object.
  get: (key: string, range: ByteRange | null) => Promise<Readable | null>;
  // Deleting a missing object succeeds.
  delete: (key: string) => Promise<void>;
  close: () => void;
}>;

export function createPosterStorage(config: PostersConfig): PosterStorage {
  return config.s3 ? s3Storage(config.s3) : localStorage(config.directory);
}

function localStorage(root: string): PosterStorage {
  const temp = join(root, '.tmp');
  const path = (key: string) => join(root, key);
  return {
    kind: 'local',
    put: async (key, body) => {
      const partial = join(temp, randomUUID());
      await mkdir(temp, { recursive: true });
      try {
        // flush: the bytes are on disk before the rename makes them the object.
        const file = await open(partial, 'wx');
        await pipeline(body, file.createWriteStream({ flush: true }));
        await mkdir(dirname(path(key)), { recursive: true });
        await rename(partial, path(key));
      } catch (err) {
        await rm(partial, { force: true });
        throw err;
      }
    },
    get: async (key, range) => {
      try {
        const file = await open(path(key), 'r');
        return file.createReadStream(range ? { start: range.start, end: range.end } : {});
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
    },
    delete: async (key) => {
      await rm(path(key), { force: true });
    },
    close: () => {},
  };
}

// lib-storage buffers one part at a time per slot: an upload holds at most
// QUEUE_SIZE × PART_SIZE bytes in memory, whatever the poster's size.
const PART_SIZE = 5 * 1024 * 1024;
const QUEUE_SIZE = 2;

// The SDK (about 10 MiB resident) is imported by the first poster read or write, so a
// process that never touches a poster, or keeps them on local disk, never loads it.
function s3Storage(options: NonNullable<PostersConfig['s3']>): PosterStorage {
  let loaded: Promise<S3> | undefined;
  const s3 = () => {
    loaded ??= loadS3(options);
    return loaded;
  };
  const Bucket = options.bucket;
  return {
    kind: 's3',
    put: async (key, body, contentType) => {
      const { client, Upload } = await s3();
      // A failing body aborts the multipart upload (leavePartsOnError: false): no parts stay.
      const upload = new Upload({
        client,
        params: { Bucket, Key: key, Body: body, ContentType: contentType },
        partSize: PART_SIZE,
        queueSize: QUEUE_SIZE,
        leavePartsOnError: false,
      });
      await upload.done();
    },
    get: async (key, range) => {
      const { client, sdk } = await s3();
      try {
        const object = await client.send(
          new sdk.GetObjectCommand({
            Bucket,
            Key: key,
            ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
          }),
        );
        return object.Body as Readable;
      } catch (err) {
        if (err instanceof sdk.NoSuchKey) return null;
        throw err;
      }
    },
    delete: async (key) => {
      const { client, sdk } = await s3();
      await client.send(new sdk.DeleteObjectCommand({ Bucket, Key: key }));
    },
    close: () => {
      void loaded?.then(({ client }) => client.destroy());
    },
  };
}

type S3 = Readonly<{
  sdk: typeof import('@aws-sdk/client-s3');
  Upload: typeof import('@aws-sdk/lib-storage').Upload;
  client: import('@aws-sdk/client-s3').S3Client;
}>;

async function loadS3(options: NonNullable<PostersConfig['s3']>): Promise<S3> {
  const [sdk, { Upload }] = await Promise.all([import('@aws-sdk/client-s3'), import('@aws-sdk/lib-storage')]);
  const client = new sdk.S3Client({
    region: options.region,
    forcePathStyle: options.forcePathStyle,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(options.accessKeyId
      ? {
          credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
        }
      : {}),
  });
  return { sdk, Upload, client };
}
