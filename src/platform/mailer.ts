// Outgoing e-mail. SMTP through nodemailer with bounded timeouts; in development without
// an SMTP host, mails are written to the log instead so the walkthrough works offline.
import { createRequire } from 'node:module';
import type Nodemailer from 'nodemailer';
import type { Logger } from './logger.ts';
import { inSpan } from './tracing.ts';

// nodemailer's CommonJS build: its ES build imports node:http, which in Node 24 loads the
// bundled undici (about 13 MiB resident, nodejs/node#59686) into every process that can mail.
const nodemailer = createRequire(import.meta.url)('nodemailer') as typeof Nodemailer;

export type Email = Readonly<{ to: string; subject: string; text: string; html: string }>;

export type Mailer = Readonly<{ send: (email: Email) => Promise<void>; close: () => void }>;

export type SmtpSettings = Readonly<{
  host: string;
  port: number;
  username: string;
  password: string;
  sender: string;
}>;

export function createSmtpMailer(smtp: SmtpSettings): Mailer {
  const transport = nodemailer.createTransport({
    host: smtp.host,
    port: smtp.port,
    secure: smtp.port === 465,
    auth: smtp.username ? { user: smtp.username, pass: smtp.password } : undefined,
    // Together well inside the e-mail job's expiry (email.worker.ts), so a send that is still
    // going is never taken for one lost in a crash and sent twice.
    connectionTimeout: 5_000,
    greetingTimeout: 5_000,
    socketTimeout: 5_000,
  });
  return {
    // SMTP is a socket, not HTTP: no instrumentation sees it, so the send gets a span here.
    send: (email) =>
      inSpan(
        'smtp send',
        { kind: 'CLIENT', attributes: { 'server.address': smtp.host, 'server.port': smtp.port } },
        async () => {
          await transport.sendMail({ from: smtp.sender, ...email });
        },
      ),
    close: () => transport.close(),
  };
}

export function createLogMailer(logger: Logger): Mailer {
  return {
    send: async (email) => {
      logger.info(
        { to: email.to, subject: email.subject, body: email.text },
        'email (development: not sent)',
      );
    },
    close: () => {},
  };
}
