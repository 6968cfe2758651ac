// A real SMTP server in the test process that keeps what it receives.
import { SMTPServer } from 'smtp-server';

export type ReceivedMail = { to: string; subject: string; text: string; html: string };

export class SmtpSink {
  readonly mails: ReceivedMail[] = [];
  #server: SMTPServer | undefined;
  port = 0;
  // While set, a message's data is read but never acknowledged: the sender hangs mid-send.
  stall = false;
  stalled = 0;

  async start(port = 0): Promise<number> {
    this.#server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onData: (stream, session, done) => {
        if (this.stall) {
          this.stalled++;
          stream.resume();
          return;
        }
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => {
          const to = session.envelope.rcptTo.map((r) => r.address).join(', ');
          this.mails.push({ to, ...parseMessage(Buffer.concat(chunks).toString('utf8')) });
          done();
        });
      },
    });
    // A sender killed mid-send (the durability tests' SIGKILL) resets its connection: an
    // 'error' on the server that, unheard, would throw in the test process.
    this.#server.on('error', () => {});
    await new Promise<void>((resolve) => this.#server?.listen(port, '127.0.0.1', resolve));
    this.port = (this.#server.server.address() as { port: number }).port;
    return this.port;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }

  // Waits until a mail to `to` arrives (bounded), and returns it.
  async waitFor(to: string, count = 1, timeoutMs = 10_000): Promise<ReceivedMail[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.mails.filter((m) => m.to.includes(to));
      if (found.length >= count) return found;
      if (Date.now() > deadline) throw new Error(`no mail to ${to} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export function tokenIn(mail: ReceivedMail): string {
  const match = /"token": "([A-Z2-7]{26})"/.exec(mail.text);
  if (!match) throw new Error(`no token in mail: ${mail.text}`);
  return match[1] as string;
}

// Just enough MIME for nodemailer's multipart/alternative messages.
function parseMessage(raw: string): { subject: string; text: string; html: string } {
  const [head = '', ...rest] = raw.split('\r\n\r\n');
  const body = rest.join('\r\n\r\n');
  const header = (name: string, block: string) =>
    new RegExp(`^${name}:\\s*(.*(?:\\r\\n[ \\t].*)*)`, 'im').exec(block)?.[1]?.replace(/\r\n[ \t]/g, ' ') ??
    '';
  const boundary = /boundary="?([^";\r\n]+)"?/i.exec(header('Content-Type', head))?.[1];
  const parts = boundary ? body.split(`--${boundary}`).slice(1, -1) : [`${head}\r\n\r\n${body}`];
  const decoded: Record<string, string> = {};
  for (const part of parts) {
    const [partHead = '', ...partBody] = part.replace(/^\r\n/, '').split('\r\n\r\n');
    const content = partBody.join('\r\n\r\n');
    const encoding = header('Content-Transfer-Encoding', partHead).toLowerCase();
    const type = header('Content-Type', partHead).split(';')[0]?.trim() ?? '';
    decoded[type] =
      encoding === 'quoted-printable'
        ? Buffer.from(
            content
              .replace(/=\r\n/g, '')
              .replace(/=([0-9A-F]{2})/g, (_m, hex: string) => String.fromCharCode(Number.parseInt(hex, 16))),
            'latin1',
          ).toString('utf8')
        : encoding === 'base64'
          ? Buffer.from(content, 'base64').toString('utf8')
          : content;
  }
  return {
    subject: header('Subject', head),
    text: decoded['text/plain'] ?? '',
    html: decoded['text/html'] ?? '',
  };
}
