// Flags of `demo cors`, the book's CORS demonstration pages.
import { int, text } from '../platform/flags.ts';

export const demoFlags = {
  'demo-port': int({ default: '9000', help: 'port of `demo cors`' }),
  'demo-api': text({ default: 'http://localhost:4000', help: 'API base URL used by `demo cors`' }),
};
