// The job queues of accounts: background.ts creates them with the tasks' queues, and the
// metrics (app.ts's createMetrics) report their depth.
import type { QueueSpec } from '../platform/jobs.ts';
import { EMAIL_QUEUE } from './accounts.ts';

const EMAIL_QUEUE_OPTIONS = {
  retryLimit: 50,
  retryDelay: 2,
  retryBackoff: true,
  retryDelayMax: 300,
  // A send that takes longer than this is presumed lost (its process died) and retried; with
  // the queue's 2 s supervision (platform/jobs.ts) a mail caught in a crash goes out again
  // within 30 s. The SMTP timeouts (platform/mailer.ts) end a live send well before.
  expireInSeconds: 15,
  // Job rows hold a plaintext token: do not keep them long after delivery.
  deleteAfterSeconds: 3600,
} as const;

export const ACCOUNTS_QUEUES: readonly QueueSpec[] = [{ name: EMAIL_QUEUE, options: EMAIL_QUEUE_OPTIONS }];
