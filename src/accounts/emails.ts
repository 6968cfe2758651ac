// The book's three mails, each with a subject, a plain-text and an HTML part.
import type { Email } from '../platform/mailer.ts';

export type EmailTemplate = 'user_welcome' | 'token_activation' | 'token_password_reset';
export type EmailData = Readonly<{ userId: number; token: string }>;

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function html(paragraphs: string[]): string {
  const body = paragraphs.map((p) => `<p>${escapeHtml(p).replaceAll('\n', '<br>')}</p>`).join('\n    ');
  return `<!doctype html>\n<html>\n  <head>\n    <meta name="viewport" content="width=device-width" />\n    <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />\n  </head>\n  <body>\n    ${body}\n  </body>\n</html>\n`;
}

function email(to: string, subject: string, paragraphs: string[]): Email {
  return { to, subject, text: `${paragraphs.join('\n\n')}\n`, html: html(paragraphs) };
}

export function renderEmail(template: EmailTemplate, to: string, data: EmailData): Email {
  const tokenBody = `{"token": "${data.token}"}`;
  switch (template) {
    case 'user_welcome':
      return email(to, 'Welcome to Greenlight!', [
        'Hi,',
        "Thanks for signing up for a Greenlight account. We're excited to have you on board!",
        `For future reference, your user ID number is ${data.userId}.`,
        'Please send a request to the `PUT /v1/users/activated` endpoint with the following JSON body to activate your account:',
        tokenBody,
        'Please note that this is a one-time use token and it will expire in 3 days.',
        'Thanks,',
        'The Greenlight Team',
      ]);
    case 'token_activation':
      return email(to, 'Activate your Greenlight account', [
        'Hi,',
        'Please send a `PUT /v1/users/activated` request with the following JSON body to activate your account:',
        tokenBody,
        'Please note that this is a one-time use token and it will expire in 3 days.',
        'Thanks,',
        'The Greenlight Team',
      ]);
    case 'token_password_reset':
      return email(to, 'Reset your Greenlight password', [
        'Hi,',
        'Please send a `PUT /v1/users/password` request with the following JSON body to set a new password:',
        `{"password": "your new password", "token": "${data.token}"}`,
        'Please note that this is a one-time use token and it will expire in 45 minutes. If you need another token please make a `POST /v1/tokens/password-reset` request.',
        'Thanks,',
        'The Greenlight Team',
      ]);
  }
}
