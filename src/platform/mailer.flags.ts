// Flags of the SMTP server the mails go through.
import { type FlagValues, int, text, when } from './flags.ts';

export const mailerFlags = {
  // Empty: mails are written to the log (development only, checked by checkServeConfig).
  'smtp-host': text({
    default: '',
    help: 'SMTP server; empty writes mails to the log, allowed only in development',
  }),
  'smtp-port': int({
    default: '25',
    help: 'SMTP port (465 uses TLS from the start)',
    rule: when((n) => n > 0 && n <= 65535, 'must be between 1 and 65535'),
  }),
  'smtp-username': text({ default: '', help: 'SMTP user' }),
  'smtp-password': text({ default: '', help: 'SMTP password', secret: true }),
  'smtp-sender': text({ default: 'Greenlight <no-reply@greenlight.local>', help: 'From address' }),
};

export function mailerConfig(v: FlagValues<typeof mailerFlags>) {
  return {
    smtp: Object.freeze({
      host: v['smtp-host'],
      port: v['smtp-port'],
      username: v['smtp-username'],
      password: v['smtp-password'],
      sender: v['smtp-sender'],
    }),
  };
}
