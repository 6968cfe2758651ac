// Delivers queued mails. A failure is logged and thrown so the queue retries with backoff.
import { type Jobs, runJob } from '../platform/jobs.ts';
import type { Logger } from '../platform/logger.ts';
import type { Mailer } from '../platform/mailer.ts';
import type { Metrics } from '../platform/metrics.ts';
import { EMAIL_QUEUE, type EmailJob } from './accounts.ts';
import { renderEmail } from './emails.ts';

export async function startEmailWorker(
  jobs: Jobs,
  mailer: Mailer,
  logger: Logger,
  metrics: Metrics,
): Promise<void> {
  await jobs.work<EmailJob>(EMAIL_QUEUE, { pollingIntervalSeconds: 1 }, async ([job]) => {
    if (!job) return;
    const { template, to, userId, token } = job.data;
    await runJob(EMAIL_QUEUE, job, async () => {
      try {
        await mailer.send(renderEmail(template, to, { userId, token }));
        logger.info({ job_id: job.id, template, user_id: userId }, 'email sent');
      } catch (err) {
        metrics.jobFailures.inc({ queue: EMAIL_QUEUE });
        logger.error({ err, job_id: job.id, template, user_id: userId }, 'email delivery failed; will retry');
        throw err;
      }
    });
  });
}
